"""A cost limit that cannot see a model's calls is not silent (rt27 finding 6): half a
price (``input_per_mtok`` without ``output_per_mtok``) is refused by the spec check, and
``validate`` and ``run`` warn when ``budget_usd`` or a model's ``max_cost_usd`` is set and
no price is known for a model the design calls. Free providers (mock, local, vLLM) and
scripted strategies are not listed: their calls cost nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.errors import SpecError
from stagbench.runs.spec import parse_spec

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()
BASE = """
name = "priced"
repetitions = 2
{top}
[game]
rounds = 2
[factors]
models = [{models}]
{settings}
"""


def spec(models: str, top: str = "", settings: str = "") -> str:
    return BASE.format(models=models, top=top, settings=settings)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("table", "given", "missing"),
    [
        ('[model_settings."mock/random"]\ninput_per_mtok = 1.0', "input", "output"),
        ("[model_settings.mock]\noutput_per_mtok = 2.0", "output", "input"),
    ],
)
def test_half_a_price_is_refused(tmp_path: Path, table: str, given: str, missing: str) -> None:
    text = spec('"mock/random"', "budget_usd = 0.02", table)
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    want = (
        f"model_settings for mock/random: {given}_per_mtok is set but {missing}_per_mtok is "
        f"not; a price needs both (set {missing}_per_mtok = 0 for a free half)"
    )
    assert want in flat(str(info.value))
    path = tmp_path / "half.toml"
    path.write_text(text)
    for command in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "o")]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, res.output
        assert want in flat(res.output) and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_a_price_whose_halves_come_from_the_provider_and_the_model_is_whole() -> None:
    table = (
        "[model_settings.mock]\ninput_per_mtok = 1.0\n"
        '[model_settings."mock/random"]\noutput_per_mtok = 1.0'
    )
    parsed = parse_spec(spec('"mock/random"', "budget_usd = 0.02", table))
    assert parsed.warnings() == []


UNPRICED = '[model_settings."openai-api/paid/m"]\nbase_url = "http://127.0.0.1:9/v1"\n'


def test_a_budget_warns_of_a_model_without_a_price() -> None:
    parsed = parse_spec(spec('"openai-api/paid/m", "mock/random"', "budget_usd = 1.0", UNPRICED))
    assert parsed.warnings() == [
        "budget_usd cannot stop openai-api/paid/m: no price is known for it, so its calls "
        'count $0; set input_per_mtok and output_per_mtok in [model_settings."openai-api/paid/m"]'
    ]
    # an OpenAI model missing from the provider's list prices is unpriced too
    parsed = parse_spec(spec('"openai/gpt-9-unlisted"', "budget_usd = 1.0"))
    assert [w.split(":")[0] for w in parsed.warnings()] == [
        "budget_usd cannot stop openai/gpt-9-unlisted"
    ]


def test_a_models_max_cost_warns_of_it_without_a_price() -> None:
    parsed = parse_spec(spec('"openai-api/paid/m"', "", UNPRICED + "max_cost_usd = 0.5\n"))
    assert [w.split(":")[0] for w in parsed.warnings()] == [
        "its max_cost_usd (0.5) cannot stop openai-api/paid/m"
    ]


@pytest.mark.parametrize(
    ("models", "top", "settings"),
    [
        ('"openai-api/paid/m"', "", UNPRICED),  # no limit: nothing to stop
        ('"mock/random", "scripted/tit-for-tat"', "budget_usd = 1.0", ""),  # free
        ('"openai/gpt-4o-mini"', "budget_usd = 1.0", ""),  # a list price
        (
            '"openai-api/paid/m"',
            "budget_usd = 1.0",
            UNPRICED + "input_per_mtok = 1.0\noutput_per_mtok = 0\n",
        ),
    ],
)
def test_no_warning_where_the_limit_sees_every_call(models: str, top: str, settings: str) -> None:
    assert parse_spec(spec(models, top, settings)).warnings() == []


def test_validate_and_run_print_the_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI() as fake:
        fake.default = Behaviour(text='{"message": "stag", "reasoning": "x", "action": "stag"}')
        monkeypatch.setenv("PAID_BASE_URL", fake.base_url)
        path = tmp_path / "s.toml"
        path.write_text(spec('"openai-api/paid/m"', "budget_usd = 0.01"))
        want = "warning: budget_usd cannot stop openai-api/paid/m: no price is known for it"
        res = runner.invoke(app, ["validate", str(path)])
        assert res.exit_code == 0 and want in flat(res.output), res.output
        res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
        assert res.exit_code == 0 and want in flat(res.output), res.output


def test_a_wrapper_costs_what_its_inner_model_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """fx27/rt27: ``fault`` was priced as free, so fault/openai/gpt-4o calls counted $0 and
    no budget could stop them; a wrapper's calls are its inner model's."""
    from stagbench.agents.models.registry import price_for
    from stagbench.agents.models.settings import ModelSettings

    inner = price_for("openai/gpt-4o-mini")
    assert inner is not None and inner.input_per_mtok > 0
    assert price_for("fault/openai/gpt-4o-mini") == inner
    assert price_for("fault/fault/openai/gpt-4o-mini") == inner
    assert price_for("fault/openai-api/x/m") is None  # unknown inside: unknown outside
    given = ModelSettings(input_per_mtok=1.0, output_per_mtok=2.0)
    assert price_for("fault/openai-api/x/m", given) == price_for("openai-api/x/m", given)
    monkeypatch.setenv("X_BASE_URL", "http://127.0.0.1:9/v1")
    spec = parse_spec('name = "w"\nbudget_usd = 1\n[factors]\nmodels = ["fault/openai-api/x/m"]\n')
    assert any("cannot stop fault/openai-api/x/m" in w for w in spec.warnings())
