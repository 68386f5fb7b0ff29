/* stagbench viewer: renders the JSON embedded in each page. No network, no libraries.
   Every string from a transcript goes into the page as text (textContent), never as HTML:
   cheap talk is adversarial input. */
"use strict";

(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var app = document.getElementById("app");

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "cls") node.className = v;
        else if (k === "on") Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x) node.appendChild(x); });
      else node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, String(attrs[k]));
    });
    return node;
  }

  function pct(x) { return x === null || x === undefined ? "" : x.toFixed(3); }
  function label(seat) { return "P" + (seat + 1); }

  function hashParams() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("=");
      try {
        out[decodeURIComponent(i < 0 ? kv : kv.slice(0, i))] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
      } catch (e) { /* a malformed escape (a cut link: "#defence=%"): that parameter is ignored */ }
    });
    return out;
  }

  function setHash(params) {
    var parts = Object.keys(params).filter(function (k) { return params[k] !== ""; })
      .map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]); });
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
    } catch (e) { /* some browsers refuse it on file:// pages: the filters still work */ }
  }

  /* ---------------- index: the run's trials, filterable by factor ---------------- */
  function renderIndex(d) {
    var m = d.manifest || {};
    var sub = [d.trials.length + " trial(s) shown from " + d.run];
    if (m.n_trials) sub.push(m.finished_trials + "/" + m.n_trials + " finished, status " + m.status);
    app.appendChild(el("header", null, el("h1", { text: "stagbench: " + d.spec }),
      el("div", { cls: "sub", text: sub.join(" · ") })));
    var main = el("main");
    app.appendChild(main);
    if (m.problem) main.appendChild(el("div", { cls: "warn", text: "manifest: " + m.problem }));
    if (d.unreadable.length) {
      var w = el("div", { cls: "warn", id: "unreadable" },
        el("strong", { text: d.unreadable.length + " transcript(s) could not be read:" }));
      d.unreadable.forEach(function (u) { w.appendChild(el("div", { text: u.file + ": " + u.problem })); });
      main.appendChild(w);
    }
    var varying = d.factors.filter(function (f) {
      var seen = {};
      d.trials.forEach(function (t) { seen[String(t[f])] = 1; });
      return Object.keys(seen).length > 1;
    });
    var params = hashParams();
    var filters = el("div", { cls: "filters", id: "filters" });
    var selects = {};
    varying.forEach(function (f) {
      var values = {};
      d.trials.forEach(function (t) { values[String(t[f])] = 1; });
      var sel = el("select", { name: f, on: { change: apply } }, el("option", { value: "", text: "all" }));
      Object.keys(values).sort().forEach(function (v) {
        sel.appendChild(el("option", { value: v, text: v === "" ? "(none)" : v }));
      });
      if (params[f] !== undefined) sel.value = params[f];
      selects[f] = sel;
      filters.appendChild(el("label", null, f.replace("_", " "), sel));
    });
    var search = el("input", { type: "search", placeholder: "trial id", value: params.id || "",
      on: { input: apply } });
    filters.appendChild(el("label", null, "trial id", search));
    main.appendChild(filters);
    var count = el("div", { cls: "count", id: "count" });
    main.appendChild(count);
    var cols = ["trial_id"].concat(varying.length ? varying : d.factors.slice(0, 3))
      .concat(["rounds", "honest_stag", "coordination", "parse_failures", "truncated"]);
    var head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", { text: c.replace("_", " ") })); });
    var body = el("tbody");
    var rows = d.trials.map(function (t) {
      var tr = el("tr", { "data-id": t.trial_id });
      cols.forEach(function (c) {
        var v = t[c];
        var td;
        if (c === "trial_id") td = el("td", null, el("a", { href: "trials/" + t.page + ".html", text: v }));
        else if (c === "honest_stag" || c === "coordination") td = el("td", { cls: "num", text: pct(v) });
        else if (typeof v === "number") td = el("td", { cls: "num", text: String(v) });
        else td = el("td", { text: v === undefined ? "" : String(v) });
        if ((c === "parse_failures" || c === "truncated") && v > 0) {
          td.appendChild(el("span", { cls: "badge " + (c === "truncated" ? "trunc" : "fail"), text: "!" }));
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
      return { tr: tr, t: t };
    });
    main.appendChild(el("table", { id: "trials" }, el("thead", null, head), body));

    function apply() {
      var state = {};
      var shown = 0;
      Object.keys(selects).forEach(function (f) { state[f] = selects[f].value; });
      rows.forEach(function (r) {
        var ok = Object.keys(state).every(function (f) {
          return state[f] === "" || String(r.t[f]) === state[f];
        }) && (!search.value || r.t.trial_id.indexOf(search.value) >= 0);
        r.tr.className = ok ? "" : "hidden";
        shown += ok ? 1 : 0;
      });
      count.textContent = "showing " + shown + " of " + rows.length + " trials";
      state.id = search.value;
      setHash(state);
    }
    apply();
  }

  /* ---------------- one trial: graph, messages, actions, calls ---------------- */
  function graph(d, size) {
    var n = d.n, r = size / 2 - 34, cx = size / 2, cy = size / 2;
    var pos = [];
    for (var i = 0; i < n; i++) {
      var a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      pos.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
    }
    var root = svg("svg", { width: size, height: size, viewBox: "0 0 " + size + " " + size,
      id: "graph", role: "img", "aria-label": "communication graph" });
    var defs = svg("defs");
    [["arrow", "#999"], ["arrow-used", "#ff7f0e"]].forEach(function (m) {
      var mk = svg("marker", { id: m[0], viewBox: "0 0 10 10", refX: 10, refY: 5,
        markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
      mk.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: m[1] }));
      defs.appendChild(mk);
    });
    root.appendChild(defs);
    var has = {};
    d.edges.forEach(function (e) { has[e[0] + ">" + e[1]] = 1; });
    var lines = {};
    var layer = svg("g", { id: "edges" });
    d.edges.forEach(function (e) {
      var u = e[0], v = e[1];
      if (!d.directed && u > v) return; // an undirected edge is stored both ways: draw it once
      var p = pos[u], q = pos[v];
      var dx = q[0] - p[0], dy = q[1] - p[1], len = Math.sqrt(dx * dx + dy * dy) || 1;
      var ox = 0, oy = 0;
      if (d.directed && has[v + ">" + u]) { ox = (-dy / len) * 5; oy = (dx / len) * 5; }
      var shrink = 21 / len;
      var line = svg("line", {
        x1: p[0] + dx * shrink + ox, y1: p[1] + dy * shrink + oy,
        x2: q[0] - dx * shrink + ox, y2: q[1] - dy * shrink + oy,
        stroke: "#bbbbbb", "stroke-width": 1.5, "class": "edge",
        "data-edge": u + "-" + v });
      if (d.directed) line.setAttribute("marker-end", "url(#arrow)");
      layer.appendChild(line);
      lines[u + ">" + v] = line;
      if (!d.directed) lines[v + ">" + u] = line;
    });
    root.appendChild(layer);
    d.seats.forEach(function (s) {
      var p = pos[s.seat];
      var g = svg("g", { "class": "node " + s.role, "data-seat": s.seat });
      g.appendChild(svg("circle", { cx: p[0], cy: p[1], r: 19,
        fill: s.role === "adversary" ? "#d62728" : "#1f77b4", stroke: "#222", "stroke-width": 1 }));
      g.appendChild(svg("text", { x: p[0], y: p[1] + 5, "text-anchor": "middle", fill: "#fff",
        "font-size": 14, "font-weight": "bold", text: s.label }));
      var tip = svg("title", { text: s.label + " · " + s.role + " · " + s.model +
        (s.adversary ? " · " + s.adversary : "") });
      g.appendChild(tip);
      root.appendChild(g);
    });
    return { root: root, lines: lines };
  }

  function actionCell(action, failed) {
    if (action === null || action === undefined) {
      return el("td", null, el("span", { cls: "act-none", text: "no action" }),
        failed ? el("span", { cls: "badge fail", text: "parse failure" }) : null);
    }
    return el("td", null, el("span", { cls: "act-" + action, text: action }));
  }

  function callView(c) {
    var cls = "call" + (c.parse_ok ? "" : " failed") + (c.truncated ? " truncated" : "");
    var summary = el("summary", null,
      label(c.seat) + " · " + c.purpose + (c.phase !== null ? " (phase " + c.phase + ")" : "") +
      " · attempt " + c.attempt + " · " + c.model + " · " + c.input_tokens + "→" +
      c.output_tokens + " tokens" + (c.finish_reason ? " · finish: " + c.finish_reason : ""),
      c.parse_ok ? null : el("span", { cls: "badge fail", text: "parse failure" }),
      c.truncated ? el("span", { cls: "badge trunc", text: "truncated" }) : null,
      c.cached ? el("span", { cls: "badge cached", text: "cached" }) : null);
    var body = el("div", { cls: "call-body" });
    body.appendChild(el("h3", { text: "Prompt (" + c.prompt.length + " messages)" }));
    c.prompt.forEach(function (m) {
      body.appendChild(el("div", { cls: "role", text: m.role }));
      body.appendChild(el("pre", { cls: "prompt", text: m.content }));
    });
    body.appendChild(el("h3", { text: "Raw reply" }));
    body.appendChild(el("pre", { cls: "raw", text: c.raw === null ? "(none)" : c.raw }));
    if (c.parsed) body.appendChild(el("pre", { cls: "parsed", text: JSON.stringify(c.parsed, null, 1) }));
    if (c.error) body.appendChild(el("div", { cls: "warn", text: "parse error: " + c.error }));
    var meta = ["temperature " + c.temperature, "max_tokens " + c.max_tokens,
      "latency " + c.latency_s + " s", "cost $" + c.cost_usd];
    if (c.response_model) meta.push("answered by " + c.response_model);
    body.appendChild(el("div", { cls: "legend", text: meta.join(" · ") }));
    return el("details", { cls: cls }, summary, body);
  }

  /* a seat's role, found by its number: the list's order is not relied on */
  function roleOf(d, seat) {
    var found = d.seats.filter(function (s) { return s.seat === seat; })[0];
    return found ? found.role : "";
  }

  function roundView(d, r, select) {
    var sec = el("section", { cls: "round", id: "round-" + r.round, "data-round": r.round });
    var outcome = r.success === null ? "" : (r.success ? "hunt succeeded" : "hunt failed") +
      ", " + r.stag_count + " stag";
    sec.appendChild(el("h2", { on: { click: function () { select(r.round); } } },
      "Round " + r.round, el("span", { cls: "outcome", text: outcome })));
    var phases = {};
    r.messages.forEach(function (m) { (phases[m.phase] = phases[m.phase] || []).push(m); });
    Object.keys(phases).sort(function (a, b) { return a - b; }).forEach(function (ph) {
      sec.appendChild(el("h3", { text: "Talk, phase " + ph }));
      phases[ph].forEach(function (m) {
        var to = m.receivers.length ? m.receivers.map(label).join(", ") : "nobody";
        var cls = "msg" + (m.parse_failed ? " failed" : m.text ? "" : " silent");
        var text = m.text !== null ? m.text : m.parse_failed ? "(no message: parse failure" +
          (m.error ? ": " + m.error : "") + ")" : "(silent)";
        var who = roleOf(d, m.sender) === "adversary" ? " (adversary)" : "";
        sec.appendChild(el("div", { cls: cls, "data-sender": m.sender },
          el("div", { cls: "who", text: label(m.sender) + who + " → " + to }),
          el("div", { cls: "text", text: text })));
      });
    });
    sec.appendChild(el("h3", { text: "Actions and payoffs" }));
    var t = el("table", { cls: "actions" }, el("thead", null, el("tr", null,
      el("th", { text: "player" }), el("th", { text: "role" }), el("th", { text: "action" }),
      el("th", { text: "payoff" }), el("th", { text: "reasoning" }))));
    var tb = el("tbody");
    d.seats.forEach(function (s) {
      tb.appendChild(el("tr", { cls: s.role },
        el("td", { text: s.label }), el("td", { text: s.role }),
        actionCell(r.actions[s.seat], r.failed[s.seat]),
        el("td", { cls: "num", text: r.payoffs ? String(r.payoffs[s.seat]) : "" }),
        el("td", { text: r.reasoning[s.seat] || (r.errors[s.seat] ? "error: " + r.errors[s.seat] : "") })));
    });
    t.appendChild(tb);
    sec.appendChild(t);
    if (r.calls.length) {
      sec.appendChild(el("h3", { text: "Model calls (" + r.calls.length + ")" }));
      r.calls.forEach(function (c) { sec.appendChild(callView(c)); });
    }
    return sec;
  }

  function renderTrial(d) {
    var f = d.factors;
    app.appendChild(el("header", null,
      el("div", { cls: "sub" }, el("a", { href: "../index.html", text: "← all trials" }),
        " · " + d.spec),
      el("h1", { text: "Trial " + d.trial_id }),
      el("div", { cls: "sub", text: [f.population, f.topology, f.disclosure, f.adversary,
        "wording " + f.prompt_variant, "defence " + f.defence].concat(f.payload ? ["payload " + f.payload] : [])
        .join(" · ") })));
    var main = el("main");
    app.appendChild(main);
    d.problems.forEach(function (p) {
      main.appendChild(el("div", { cls: "warn", text: "inconsistent transcript: " + p }));
    });
    var calls = [].concat.apply([], d.rounds.map(function (r) { return r.calls; }));
    var truncated = calls.filter(function (c) { return c.truncated; }).length;
    if (d.parse_failures || truncated) {
      main.appendChild(el("div", { cls: "warn", id: "failures",
        text: d.parse_failures + " parse failure(s), " + truncated + " truncated repl" +
          (truncated === 1 ? "y" : "ies") + " (finish_reason length)" }));
    }
    var layout = el("div", { cls: "layout" });
    main.appendChild(layout);
    var side = el("div", { cls: "side" });
    var drawn = graph(d, 370);
    var nav = el("div", { cls: "rounds-nav", id: "rounds-nav" });
    side.appendChild(drawn.root);
    side.appendChild(nav);
    side.appendChild(el("div", { cls: "legend" },
      el("span", null, el("span", { cls: "swatch", style: "background:#1f77b4" }), "honest"),
      el("span", null, el("span", { cls: "swatch", style: "background:#d62728" }), "adversary"),
      el("span", null, el("span", { cls: "swatch", style: "background:#ff7f0e" }), "edge used this round")));
    var seats = el("table", { cls: "kv" });
    d.seats.forEach(function (s) {
      seats.appendChild(el("tr", { cls: s.role }, el("td", { text: s.label }),
        el("td", { text: s.model + (s.adversary ? " · " + s.adversary : "") }),
        el("td", { cls: "num", text: String(d.totals[s.seat]) })));
    });
    side.appendChild(el("h3", { text: "Seats (total payoff)" }));
    side.appendChild(seats);
    var info = el("table", { cls: "kv" });
    var facts = [["seed", d.seed], ["matched set", d.match], ["payload", d.payload_text],
      ["rounds", d.rounds.length], ["tokens", d.tokens.join(" in / ") + " out"],
      ["cost", "$" + d.cost_usd]];
    facts.forEach(function (kv) {
      if (kv[1] !== null && kv[1] !== undefined) {
        info.appendChild(el("tr", null, el("td", { text: kv[0] }), el("td", { text: String(kv[1]) })));
      }
    });
    side.appendChild(el("h3", { text: "Trial" }));
    side.appendChild(info);
    layout.appendChild(side);
    var list = el("div", { id: "rounds" });
    layout.appendChild(list);
    var sections = {}, buttons = {};

    function select(round) {
      Object.keys(drawn.lines).forEach(function (k) {
        var line = drawn.lines[k];
        line.setAttribute("stroke", "#bbbbbb");
        line.setAttribute("stroke-width", 1.5);
        line.classList.remove("used");
        if (d.directed) line.setAttribute("marker-end", "url(#arrow)");
      });
      var r = d.rounds[round - 1];
      if (r) {
        r.messages.forEach(function (m) {
          if (!m.text) return;
          m.receivers.forEach(function (v) {
            var line = drawn.lines[m.sender + ">" + v];
            if (!line) return;
            line.setAttribute("stroke", "#ff7f0e");
            line.setAttribute("stroke-width", 5);
            line.classList.add("used");
            if (d.directed) line.setAttribute("marker-end", "url(#arrow-used)");
          });
        });
      }
      Object.keys(sections).forEach(function (k) {
        sections[k].classList.toggle("current", Number(k) === round);
        buttons[k].classList.toggle("on", Number(k) === round);
      });
      var params = hashParams();
      params.round = String(round);
      setHash(params);
    }

    d.rounds.forEach(function (r) {
      var b = el("button", { type: "button", text: "round " + r.round,
        on: { click: function () { select(r.round); sections[r.round].scrollIntoView(); } } });
      buttons[r.round] = b;
      nav.appendChild(b);
      sections[r.round] = roundView(d, r, select);
      list.appendChild(sections[r.round]);
    });
    var start = Number(hashParams().round) || 1;
    if (d.rounds.length) select(Math.min(Math.max(start, 1), d.rounds.length));
  }

  if (document.body.getAttribute("data-page") === "index") renderIndex(DATA);
  else renderTrial(DATA);
  document.body.setAttribute("data-rendered", "yes");
})();
