"""One vocabulary (crm/contract.py, score models in ml/models.py): every copy agrees with it.

Derived copies are checked to be derived (dbt vars, policy caps, spec types, list columns); the
quality gates' deliberately independent copies (expectations/) are checked to be equal.
"""

from __future__ import annotations

import inspect
import re
import typing

import pytest
import yaml

from crm import contract
from crm.config import DBT_PROJECT_DIR
from crm.contract import (
    CHANNELS,
    CONSENT_CHANNELS,
    EVENT_TYPES,
    JURISDICTIONS,
    MESSAGE_CHANNELS,
    PII_FIELDS,
    PRODUCTS,
    SCORE_MODELS,
    UPLIFT_SCORE_MODEL,
)

# ------------------------------------------------------------------------------------------ dbt


def test_dbt_vars_are_current():
    """`python -m crm.contract --check-dbt-vars`: run `--write-dbt-vars` after changing the vocabulary."""
    assert contract.main(["--check-dbt-vars"]) == 0


def test_dbt_vars_hold_the_vocabulary():
    project = yaml.safe_load(contract.DBT_PROJECT_FILE.read_text())
    want = {
        "vocab_channels": CHANNELS,
        "vocab_consent_channels": CONSENT_CHANNELS,
        "vocab_products": PRODUCTS,
        "vocab_pii_fields": PII_FIELDS,
        "vocab_jurisdictions": JURISDICTIONS,
        "vocab_event_types": EVENT_TYPES,
    }
    assert contract.dbt_vars() == want
    assert {k: tuple(v) for k, v in project["vars"].items() if k.startswith("vocab_")} == want


def test_stale_dbt_vars_are_found_and_rewritten(monkeypatch):
    text = contract.DBT_PROJECT_FILE.read_text()
    assert contract.render_dbt_vars(text) == text  # idempotent
    monkeypatch.setattr(contract, "CHANNELS", (*CHANNELS, "carrier_pigeon"))
    stale = contract.render_dbt_vars(text)
    assert stale != text and '"carrier_pigeon"' in stale
    assert contract.render_dbt_vars(stale) == stale
    # everything outside the markers is kept
    outside = re.compile(re.escape(contract.DBT_VARS_BEGIN) + ".*?" + re.escape(contract.DBT_VARS_END), re.S)
    assert outside.sub("", stale) == outside.sub("", text)
    with pytest.raises(ValueError, match="markers are missing"):
        contract.render_dbt_vars(text.replace(contract.DBT_VARS_BEGIN, ""))


def test_the_macros_read_the_vars_and_spell_out_no_list():
    text = (DBT_PROJECT_DIR / "macros" / "helpers.sql").read_text()
    for macro, var in [
        ("channels", "vocab_channels"),
        ("consent_channels", "vocab_consent_channels"),
        ("products", "vocab_products"),
        ("pii_fields", "vocab_pii_fields"),
        ("jurisdictions", "vocab_jurisdictions"),
        ("event_types", "vocab_event_types"),
    ]:
        body = re.search(r"macro " + macro + r"\(\)(.*?)endmacro", text, re.S)
        assert body, macro
        assert re.search(r"return\(var\('" + var + r"'\)\)", body.group(1)), macro
    assert not re.search(r"return\(\[", text), "a macro spells out a list: make it a generated var"


def test_event_types_named_in_dbt_models_are_the_contracts():
    """Every 'family.name' literal of an event family in the dbt SQL is an event type of the contract."""
    families = {t.split(".")[0] for t in EVENT_TYPES}
    named = set()
    for path in (DBT_PROJECT_DIR / "models").rglob("*.sql"):
        for lit in re.findall(r"'([a-z_]+(?:\.[a-z_]+)+)'", path.read_text()):
            if lit.split(".")[0] in families:
                named.add((path.name, lit))
    assert named, "no event type found: the pattern is stale"
    assert [(f, t) for f, t in sorted(named) if t not in EVENT_TYPES] == []


def _dim_player_country_values() -> list[str]:
    for path in (DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []) or []:
            if model.get("name") != "dim_player":
                continue
            for col in model.get("columns", []):
                if col.get("name") == "country":
                    for t in col.get("data_tests", col.get("tests", [])):
                        if isinstance(t, dict) and "accepted_values" in t:
                            av = t["accepted_values"]
                            return list(av.get("arguments", av)["values"])
    raise AssertionError("dim_player.country has no accepted_values test")


def test_dim_player_accepts_the_jurisdictions():
    assert tuple(_dim_player_country_values()) == JURISDICTIONS


# ------------------------------------------------------------------------------------- channels


def test_channels_caps_and_consent_columns():
    from crm.campaigns.policy import POLICY

    assert CHANNELS == tuple(c.name for c in MESSAGE_CHANNELS) == ("email", "push", "sms", "in_app")
    assert CONSENT_CHANNELS == (*CHANNELS, "profiling")
    # the house policy's caps derive from the vocabulary (and are what they were)
    assert (
        POLICY.channel_caps
        == {c.name: c.caps for c in MESSAGE_CHANNELS}
        == {"email": (1, 3), "push": (1, 3), "sms": (1, 2), "in_app": (2, 7)}
    )
    assert [c.consent_column for c in MESSAGE_CHANNELS] == [f"consent_{c}" for c in CHANNELS]
    assert contract.consent_products_column("sms") == "consent_sms_products"
    assert contract.consent_withdrawn_column("sms") == "consent_sms_products_withdrawn"
    assert contract.consent_version_column("sms") == "consent_sms_version"


def test_spec_and_calendar_types_derive_from_the_vocabulary():
    from crm.campaigns import policy, spec

    def literal(annotation) -> tuple:
        while typing.get_origin(annotation) is not typing.Literal:
            annotation = typing.get_args(annotation)[0]
        return typing.get_args(annotation)

    fields = spec.CampaignSpec.model_fields
    assert literal(fields["channel"].annotation) == CHANNELS
    assert literal(fields["jurisdictions"].annotation) == JURISDICTIONS
    assert literal(fields["product"].annotation) == PRODUCTS
    assert literal(spec.Segment.model_fields["scores"].annotation) == spec.SCORE_FIELDS
    assert literal(policy.Blackout.model_fields["channels"].annotation) == CHANNELS
    assert literal(policy.Blackout.model_fields["jurisdictions"].annotation) == JURISDICTIONS


def test_jurisdiction_rules_cover_the_jurisdictions():
    from crm.campaigns.jurisdictions import RULES

    assert set(RULES) == set(JURISDICTIONS)


# --------------------------------------------------------------------------------------- models


def test_score_models_derive_from_ml_models():
    from crm import warehouse
    from crm.campaigns import lists, spec
    from ml import models, uplift_train

    assert SCORE_MODELS == models.SCORE_MODELS == ("churn", "deposit_intent", "uplift_value")
    assert warehouse.SCORE_MODELS == lists.SCORES == SCORE_MODELS
    assert warehouse.UPLIFT_SCORE_MODEL == UPLIFT_SCORE_MODEL == "uplift_value"
    assert lists.UPLIFT_SCORE == "uplift_value_score"
    assert spec.SCORE_FIELDS == ("churn_score", "deposit_intent_score")
    assert uplift_train.UPLIFT_MODELS == {"uplift_deposit": "deposited_7d", "uplift_ngr": "ngr_eur_14d"}
    # the value campaigns target by is derived from a trained uplift model, under its name
    assert UPLIFT_SCORE_MODEL not in models.UPLIFT_MODELS and models.UPLIFT_VALUE_SOURCE in models.UPLIFT_MODELS
    assert models.REGISTERED_NAMES == {
        "churn": "churn_lgbm",
        "deposit_intent": "deposit_intent_lgbm",
        "uplift_deposit": "uplift_deposit",
        "uplift_ngr": "uplift_ngr",
        "uplift_value": "uplift_deposit",
    }
    # the list's columns (a change here changes every published file's layout)
    assert lists.LIST_COLUMNS[11:17] == (
        "churn_score",
        "churn_model_version",
        "deposit_intent_score",
        "deposit_intent_model_version",
        "uplift_value_score",
        "uplift_value_model_version",
    )
    assert lists.LIST_COLUMNS[-1] == lists.VALUE_COLUMN == "predicted_value_eur_cents"


# ------------------------------------------------------------- the gates' independent copies


def test_the_marts_gate_copy_agrees():
    from expectations import marts

    assert marts.CHANNELS == CHANNELS


def test_the_list_gate_copies_agree():
    from expectations import campaign_list as gate

    assert gate.CHANNELS == CHANNELS
    assert gate.JURISDICTIONS == JURISDICTIONS
    assert gate.UPLIFT_SCORE_COLUMN == f"{UPLIFT_SCORE_MODEL}_score"
    assert gate.VALUE_COLUMN == "predicted_value_eur_cents"
    assert gate._KNOWN == "(" + ", ".join(f"'{j}'" for j in JURISDICTIONS) + ")"
    # the recomputed-eligibility SQL names every channel in each of its CASE l.channel blocks
    blocks = re.findall(r"CASE l\.channel(.*?)END", gate._RECOMPUTE_SQL, re.S)
    assert len(blocks) == 3
    for block in blocks:
        pairs = re.findall(r"WHEN '(\w+)' THEN p\.consent_(\w+?)(?:_products(?:_withdrawn)?)?\b", block)
        assert [ch for ch, _ in pairs] == list(CHANNELS)
        assert all(ch == col for ch, col in pairs)
    # the jurisdiction rules the gate recomputes name known jurisdictions only

    named = set(re.findall(r'_IN\.format\(code="(\w+)"\)', inspect.getsource(gate)))
    assert named and named <= set(JURISDICTIONS)
    profile = gate._PROFILE_COLUMNS
    for ch in CHANNELS:
        assert {f"consent_{ch}", f"consent_{ch}_products", f"consent_{ch}_products_withdrawn"} <= set(profile)


def test_the_online_profile_carries_the_cashback_cost_input():
    """The store keeps its own name of the feature a cashback is costed on (it sits below campaigns)."""
    from crm.campaigns import offers
    from crm.store import profile
    from ml.features import FEATURE_NAMES

    assert profile.LOSS_COLUMN == offers.LOSS_COLUMN == "net_loss_eur_7d"
    assert offers.LOSS_COLUMN in FEATURE_NAMES
