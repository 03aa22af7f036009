"""Tests of the provider metadata that Airflow discovers through the package entry point."""

from __future__ import annotations

import importlib
import importlib.util
import json
from importlib.metadata import entry_points, version
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_reclaim.get_provider_info import get_provider_info
from airflow_provider_reclaim.hooks.webhook import DEFAULT_MAX_BODY_BYTES, ReclaimWebhookHook

DISTRIBUTION = "airflow-provider-reclaim"
AIRFLOW_PACKAGE_DIR = Path(airflow.__file__).parent


def load_airflow_schema(name: str) -> dict:
    return json.loads((AIRFLOW_PACKAGE_DIR / name).read_text(encoding="utf-8"))


def connection_type() -> dict:
    connection_types = get_provider_info()["connection-types"]
    (entry,) = [item for item in connection_types if item["connection-type"] == "reclaim_webhook"]
    return entry


def reclaim_entry_points() -> list:
    return [
        entry
        for entry in entry_points(group="apache_airflow_provider")
        if entry.dist is not None and entry.dist.name == DISTRIBUTION
    ]


def test_provider_info_matches_schema():
    schema = load_airflow_schema("provider_info.schema.json")
    validator = jsonschema.validators.validator_for(schema)(schema)

    errors = [error.message for error in validator.iter_errors(get_provider_info())]

    assert errors == []


def test_provider_info_names_distribution():
    info = get_provider_info()

    assert info["package-name"] == DISTRIBUTION
    assert info["versions"][0] == version(DISTRIBUTION)


def test_entry_point_loads_provider_info():
    found = reclaim_entry_points()

    assert len(found) == 1
    assert found[0].load() is get_provider_info


def test_connection_type_hook_class():
    entry = connection_type()
    module_name, _, class_name = entry["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)

    assert hook_class is ReclaimWebhookHook
    assert entry["hook-name"] == ReclaimWebhookHook.hook_name


def test_conn_fields_have_labels():
    fields = connection_type()["conn-fields"]

    assert set(fields) == {"previous_secrets", "inbox_url", "max_body_bytes"}
    for name, field in fields.items():
        assert field.get("label"), f"conn-fields.{name} has no label"
        assert field.get("description"), f"conn-fields.{name} has no description"


def test_conn_fields_previous_secrets_sensitive():
    fields = connection_type()["conn-fields"]

    assert fields["previous_secrets"]["schema"]["format"] == "password"


def test_conn_fields_max_body_bytes_matches_hook():
    schema = connection_type()["conn-fields"]["max_body_bytes"]["schema"]

    assert schema["default"] == DEFAULT_MAX_BODY_BYTES
    assert schema["minimum"] == 1024


def test_ui_field_behaviour_matches_schema():
    behaviour = connection_type()["ui-field-behaviour"]
    schema = load_airflow_schema("customized_form_field_behaviours.schema.json")
    as_python_names = {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }

    jsonschema.validate(as_python_names, schema)
    assert "password" not in behaviour["hidden-fields"]


MODULE_SECTIONS = ("hooks", "triggers", "operators")


@pytest.mark.parametrize("section", MODULE_SECTIONS)
def test_listed_modules_exist(section):
    modules = [module for entry in get_provider_info().get(section, []) for module in entry["python-modules"]]

    assert modules, f"no {section} listed"
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"{section} lists {module}, which does not exist"


def test_plugin_class_exists():
    (plugin,) = get_provider_info()["plugins"]
    module_name, _, class_name = plugin["plugin-class"].rpartition(".")

    assert hasattr(importlib.import_module(module_name), class_name)


def _form_fields_unavailable() -> bool:
    """Airflow 3.1 builds connection forms from wtforms fields, and wtforms comes with the FAB provider."""
    import importlib.util

    from airflow import __version__ as airflow_version
    from packaging.version import Version

    return Version(airflow_version) < Version("3.2") and importlib.util.find_spec("wtforms") is None


@pytest.mark.skipif(
    _form_fields_unavailable(), reason="Airflow 3.1 without wtforms shows no connection form fields"
)
def test_providers_manager_registers_connection():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets

    assert DISTRIBUTION in manager.providers
    assert widgets["extra__reclaim_webhook__previous_secrets"].is_sensitive is True
    assert widgets["extra__reclaim_webhook__inbox_url"].is_sensitive is False
    max_body_field = widgets["extra__reclaim_webhook__max_body_bytes"].field
    # Airflow 3.2 and newer read the declarative conn-fields, which give a JSON schema. Airflow 3.1
    # calls the hook's get_connection_form_widgets(), which gives a wtforms field.
    label = max_body_field["schema"]["title"] if isinstance(max_body_field, dict) else max_body_field.args[0]
    assert label == "Maximum body size (bytes)"
    assert manager.field_behaviours["reclaim_webhook"]["relabeling"] == {"password": "Webhook secret"}
