"""Campaign files and the calendar as hostile input: every bad file is an error naming it, never a
crash, a hang or a huge message, and the other campaigns still load (issue 11, items 8 and 13)."""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import tempfile
import types
import typing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from crm.campaigns.policy import CalendarError, load_calendar
from crm.campaigns.spec import MAX_EUR, MAX_NUMBER, CampaignError, CampaignSpec, load_campaign, load_campaigns
from crm.cli import main
from crm.config import CAMPAIGNS_DIR

GOOD = "id: good_one\nname: g\nchannel: sms\n"
MAX_MESSAGE = 3_000  # an error about one file stays readable, whatever the file holds

# A campaign that sets every numeric field (test_the_fuzzed_campaign_covers_every_numeric_field).
FULL: dict = {
    "id": "fuzzed", "name": "every number", "owner": "Dana Owner", "channel": "email", "priority": 10,
    "max_list_size": 1000,
    "segment": {"rules": [{"field": "deposit_eur_90d", "op": ">=", "value": 100},
                          {"field": "days_since_last_active", "op": "between", "value": [1, 60]}],
                "scores": {"churn_score": {"min": 0.1, "max": 0.9}}},
    "offer": {"template": "bonus", "value_eur": 5, "percent": 10, "cap_eur": 50, "wager_eur": 20, "wagering": 5,
              "expiry_days": 7},
    "target": {"by": "uplift", "budget_eur": 100, "min_uplift_eur": 1},
    "experiment": {"holdout": 0.1, "variants": {"A": 1}},
    "budget": {"total_eur": 1000, "per_player_per_day_eur": 50},
    "frequency": {"max_per_day": 1, "max_per_week": 2, "cooldown_hours": 24, "dedup_days": 14},
}


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted patterns of every int / float field of ``model`` (``*``: any list index or mapping key)."""

    def walk(ann: object, path: str) -> set[str]:
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin is typing.Annotated:
            return walk(args[0], path)
        if origin in (typing.Union, types.UnionType):
            return set().union(*(walk(a, path) for a in args))
        if origin is list:
            return walk(args[0], f"{path}.*")
        if origin is dict:
            return walk(args[1], f"{path}.*")
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return _numeric_fields(ann, f"{path}.")
        return {path} if ann in (int, float) else set()

    return set().union(*(walk(f.annotation, prefix + name) for name, f in model.model_fields.items()))


def _leaves(doc: object, path: tuple = ()) -> list[tuple]:
    """Paths of the numbers in a YAML document."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaves(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaves(v, (*path, i))]
    return [path] if isinstance(doc, int | float) and not isinstance(doc, bool) else []


LEAVES = _leaves(FULL)
# The same campaign with its offer chosen per player: the choices' numbers are fuzzed too.
FULL_CHOICE: dict = FULL | {"offer": {"choices": {"a": {"offer": FULL["offer"], "relative_effect": 1.5}}}}
DOCS = {"fixed": FULL, "choice": FULL_CHOICE}
PLACES = [("fixed", p) for p in LEAVES] + [("choice", p) for p in _leaves(FULL_CHOICE) if p[0] == "offer"]


def _set(doc: dict, path: tuple, value: object) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def _numbers(obj: object) -> list:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return [obj] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


def test_the_fuzzed_campaign_covers_every_numeric_field():
    """A numeric field added to the spec later is fuzzed too, or this fails."""
    assert load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(FULL)})[1] == []
    assert load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(FULL_CHOICE)})[1] == []
    dotted = {".".join(map(str, p)) for _, p in PLACES}
    missing = {f for f in _numeric_fields(CampaignSpec) if not fnmatch.filter(dotted, f)}
    assert not missing, f"add these to FULL: {sorted(missing)}"


def load_campaigns_of(files: dict[str, str | bytes]) -> tuple[list[CampaignSpec], list[str]]:
    with tempfile.TemporaryDirectory(prefix="hostile_") as d:
        for name, body in files.items():
            (Path(d) / name).write_bytes(body if isinstance(body, bytes) else body.encode())
        return load_campaigns(d)


HOSTILE_NUMBERS = (
    st.floats()  # nan, +-inf, -0.0, subnormals and huge ones included
    | st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 1e308, -1e308, 1e12, 1e12 * (1 + 1e-15), 5e-324,
                       1e9, 1e9 + 0.01, 2**63, -(2**63) - 1])
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.sampled_from(["inf", "-inf", "nan", ".inf", "1e400", "1e308", "abc", "", "20 EUR", "0x10", "1_000"])
)


def _sane(value: object) -> bool:
    """Whether ``value`` reads as a finite number within the bound of money (a quoted "1_000" does)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(number) and abs(number) <= MAX_EUR


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=HOSTILE_NUMBERS)
def test_any_number_in_any_numeric_field_loads_or_names_the_file_and_field(place, value):
    doc, where = place
    body = yaml.safe_dump(_set(DOCS[doc], where, value), allow_unicode=True)
    specs, errors = load_campaigns_of({"fuzzed.yaml": body, "good_one.yaml": GOOD})
    assert "good_one" in [s.id for s in specs]  # the other campaigns always load
    if errors:
        (err,) = errors
        assert "fuzzed.yaml" in err and "field '" in err and len(err) < MAX_MESSAGE
        if not _sane(value):
            # not a sane number: the field itself is named (a rule's value: its rule); a sane one may
            # instead break a check across fields (value_eur 0: "a budget is set but the offer costs nothing")
            named = where if not any(isinstance(k, int) for k in where) else where[:len(where) - 2]
            assert f"field '{'.'.join(map(str, named))}" in err, err
        return
    (spec,) = [s for s in specs if s.id == "fuzzed"]
    for n in _numbers(spec.model_dump()):
        assert math.isfinite(n) and abs(n) <= MAX_NUMBER
        assert n != 0 or math.copysign(1, n) == 1  # no negative zero (it would change the spec hash)
    for cents in (spec.budget.total_cents, spec.budget.per_player_per_day_cents, spec.target.budget_cents):
        assert cents is None or isinstance(cents, int)
    spec.spec_hash()


@pytest.mark.parametrize("field, value", [
    (("offer", "value_eur"), math.inf), (("budget", "total_eur"), math.inf),
    (("budget", "per_player_per_day_eur"), math.inf), (("offer", "value_eur"), math.nan),
    (("budget", "total_eur"), -math.inf), (("budget", "total_eur"), 1e308), (("target", "budget_eur"), 1e308),
    (("offer", "cap_eur"), "inf"), (("max_list_size",), 10**40),
])
def test_infinite_nan_and_huge_numbers_name_the_file_and_field(field, value):
    specs, errors = load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(_set(FULL, field, value)), "good_one.yaml": GOOD})
    assert [s.id for s in specs] == ["good_one"] and len(errors) == 1
    assert "fuzzed.yaml" in errors[0] and f"field '{'.'.join(field)}'" in errors[0]


def test_negative_zero_reads_as_zero():
    plain = load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(_set(FULL, ("target", "min_uplift_eur"), 0))})[0]
    negative = load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(_set(FULL, ("target", "min_uplift_eur"), -0.0))})[0]
    assert math.copysign(1, negative[0].target.min_uplift_eur) == 1
    assert negative[0].spec_hash() == plain[0].spec_hash()


@pytest.mark.parametrize("rule, expected", [
    ({"field": "deposit_eur_90d", "op": ">=", "value": "abc"}, "is a number"),
    ({"field": "deposit_eur_90d", "op": ">=", "value": "10000"}, "is a number"),  # quoted: text, not a number
    ({"field": "deposit_eur_90d", "op": "between", "value": ["1", "2"]}, "is a number"),
    ({"field": "deposit_eur_90d", "op": "between", "value": [500, 10]}, "low <= high"),
    ({"field": "country", "op": ">=", "value": "DE"}, "is text"),
    ({"field": "brand_id", "op": "in", "value": [1, 2]}, "is text"),
    ({"field": "deposit_eur_90d", "op": ">=", "value": [1e308, 1]}, "field 'segment.rules.0"),
])
def test_a_rule_value_of_the_wrong_kind_is_refused_on_load(rule, expected):
    errors = load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(_set(FULL, ("segment", "rules", 0), rule))})[1]
    assert len(errors) == 1 and "field 'segment.rules.0" in errors[0] and expected in errors[0]


def test_text_rules_on_text_fields_still_load():
    rules = [{"field": "country", "op": "in", "value": ["DE", "MT"]},
             {"field": "favourite_game_category_90d", "op": "==", "value": "slots"}]
    specs, errors = load_campaigns_of({"fuzzed.yaml": yaml.safe_dump(_set(FULL, ("segment", "rules"), rules))})
    assert not errors and specs[0].segment.rules[0].value == ["DE", "MT"]


# ------------------------------------------------------------------------------------------------ hostile files
BOMB = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
name: *i
"""

HOSTILE_FILES = {
    "binary": bytes(range(256)) * 4,
    "latin1": "id: hostile\nname: café\nchannel: sms\n".encode("latin-1"),
    "utf16": "id: hostile\nname: x\nchannel: sms\n".encode("utf-16"),
    "nul": b"id: hostile\x00\nname: x\nchannel: sms\n",
    "empty": b"",
    "blank": b"  \n\n",
    "comment_only": b"# nothing here\n",
    "top_level_list": b"- id: hostile\n- name: x\n",
    "top_level_string": b"just some text\n",
    "top_level_number": b"42\n",
    "two_documents": b"id: hostile\nname: x\nchannel: sms\n---\nid: other\n",
    "python_tag": b"!!python/object/apply:os.system ['echo owned']\n",
    "alias_bomb": BOMB,
    "deep_nesting": b"id: hostile\nname: " + b"[" * 5000 + b"]" * 5000 + b"\nchannel: sms\n",
    "huge": b"id: hostile\nname: x\nchannel: sms\n# " + b"x" * (2 << 20) + b"\n",
    "many_problems": ("id: hostile\nname: x\nchannel: sms\nsegment:\n  rules:\n"
                      + "    - {field: shoe_size, op: '>=', value: 1}\n" * 2000).encode(),
    "long_unknown_field": ("id: hostile\nname: x\nchannel: sms\n? " + "k" * 200_000 + "\n: 1\n").encode(),
    "long_echo": ("id: hostile\nname: [" + ", ".join(["x" * 50] * 15_000) + "]\nchannel: sms\n").encode(),
    "impossible_date": b"id: hostile\nname: x\nchannel: sms\nschedule: {start: 2025-13-01}\n",
    "strings_for_numbers": b"id: hostile\nname: x\nchannel: sms\npriority: high\noffer: {value_eur: lots}\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_a_hostile_file_is_an_error_naming_it_and_the_others_still_load(tmp_path, kind):
    for p in CAMPAIGNS_DIR.glob("*.yaml"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "hostile.yaml").write_bytes(HOSTILE_FILES[kind])
    specs, errors = load_campaigns(tmp_path)
    assert sorted(s.id for s in specs) == sorted(p.stem for p in CAMPAIGNS_DIR.glob("*.yaml")
                                                 if not p.stem.startswith("_"))
    assert len(errors) == 1 and str(tmp_path / "hostile.yaml") in errors[0]
    assert len(errors[0]) < MAX_MESSAGE, len(errors[0])


@pytest.mark.parametrize("kind", ["folder", "dev_zero", "fifo", "dangling_link"])
def test_a_campaign_path_that_is_not_a_regular_file_is_an_error(tmp_path, kind):
    path = tmp_path / "hostile.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "dev_zero":  # reading it would never end
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        path.symlink_to("/dev/zero")
    elif kind == "fifo":  # opening it would wait for a writer forever
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "nowhere.yaml")
    (tmp_path / "good_one.yaml").write_text(GOOD)
    specs, errors = load_campaigns(tmp_path)
    assert [s.id for s in specs] == ["good_one"] and len(errors) == 1 and "hostile.yaml" in errors[0]


@pytest.mark.parametrize("campaign_id", [
    "ｃａｍｐａｉｇｎ", "сampaign", "camp\u200baign", "camp\u0301aign", "campaign\n", "../campaign", "a/campaign",
    "camp aign", "Campaign", "ab", "x" * 65, "con", "nul", "com1", "lpt9", "ﬁle_campaign", "camp٣aign",
])
def test_ids_stay_safe_file_names(campaign_id):
    with pytest.raises(ValueError, match="id"):
        CampaignSpec.model_validate({"id": campaign_id, "name": "x", "channel": "sms"})


def test_an_id_that_is_a_device_name_is_refused_on_load(tmp_path):
    (tmp_path / "aux.yaml").write_text("id: aux\nname: x\nchannel: sms\n")
    with pytest.raises(CampaignError, match="field 'id'.*device name"):
        load_campaign(tmp_path / "aux.yaml")


# ------------------------------------------------------------------------------------------------ the calendar
@pytest.mark.parametrize("body, expected", [
    (BOMB, "alias"),
    (bytes(range(256)), "not UTF-8"),
    ("blackouts: [{name: x, start: 2025-01-01}]\n".encode("utf-16"), "not UTF-8"),
    (b"blackouts:\n" + b"  - {name: x, start: 2025-12-01, end: nope}\n" * 1000, "more problems"),
    (b"blackouts: [{name: x, start: 2025-13-01, end: 2025-12-31}]\n", "a value cannot be read"),
    (b"blackouts: [{name: " + b"y" * 100_000 + b", start: 2025-01-02, end: 2025-01-01}]\n", "invalid calendar"),
    (b"- a list\n", "expected a mapping"),
])
def test_a_hostile_calendar_is_a_short_calendar_error(tmp_path, body, expected):
    (tmp_path / "_calendar.yaml").write_bytes(body)
    with pytest.raises(CalendarError) as e:
        load_calendar(tmp_path)
    assert "_calendar.yaml" in str(e.value) and expected in str(e.value) and len(str(e.value)) < MAX_MESSAGE


def test_an_empty_calendar_has_no_blackouts(tmp_path):
    (tmp_path / "_calendar.yaml").write_bytes(b"")
    assert load_calendar(tmp_path).blackouts == []


# ------------------------------------------------------------------------------------------------ crm campaigns
def test_crm_campaigns_reads_the_campaigns_dir_of_the_environment(tmp_path, monkeypatch):
    (tmp_path / "oops.yaml").write_text("id: oops\nname: x\nchannel: email\noffer: {template: bonus, "
                                        "value_eur: .inf}\n")
    (tmp_path / "good_one.yaml").write_text(GOOD)
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path))  # set after crm.cli was imported
    r = CliRunner().invoke(main, ["campaigns"])
    assert r.exit_code == 1, r.output
    assert "good_one" in r.output and "oops.yaml" in r.output and "field 'offer.value_eur'" in r.output
    r = CliRunner().invoke(main, ["campaigns", "--dir", str(CAMPAIGNS_DIR)])  # --dir still wins
    assert r.exit_code == 0 and "oops" not in r.output
    monkeypatch.delenv("CRM_CAMPAIGNS_DIR")
    r = CliRunner().invoke(main, ["campaigns"])
    assert r.exit_code == 0 and str(CAMPAIGNS_DIR) in r.output
    r = CliRunner().invoke(main, ["campaigns", "--dir", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "no campaign folder" in r.output


def test_crm_campaigns_help_names_the_environment_variable():
    r = CliRunner().invoke(main, ["campaigns", "--help"])
    assert r.exit_code == 0 and "$CRM_CAMPAIGNS_DIR" in r.output
