"""The grace in force against Railway's draining time (backup_svc/draining.py), and how it is read."""

from __future__ import annotations

import pytest

from backup_svc.config import ConfigError, Settings
from backup_svc.draining import DRAIN_MARGIN_S, Draining
from backup_svc.serving.server import gunicorn_options

BASE_ENV = {"DATABASE_URL": "postgresql://u:p@db.internal/app", "ADMIN_TOKEN": "t" * 24}


@pytest.mark.parametrize(
    "requested, draining, on_railway, grace, warned",
    [
        (60, None, False, 60, None),  # off Railway, nothing to fit
        (60, None, True, 60, "is not set"),  # on Railway: the default is 0 s
        (60, 90, True, 60, None),  # the settings of .railway/railway.ts
        (60, 60 + DRAIN_MARGIN_S, True, 60, None),  # just enough
        (60, 60 + DRAIN_MARGIN_S - 1, True, 59, "shorter than GRACEFUL_TIMEOUT=60 plus 15 s"),
        (60, 40, True, 25, "downloads get 25 s"),
        (600, 630, True, 600, None),  # the guide's 10-minute example
        (60, 0, True, 1, "cuts every running download at once"),
        (5, 10, False, 1, "set it to 20 or more"),  # shorter than the margin itself
    ],
)
def test_grace_ends_before_the_draining_and_short_draining_is_warned(requested, draining, on_railway, grace, warned):
    fit = Draining(draining, on_railway)

    assert fit.grace_s(requested) == grace
    warnings = fit.warnings(requested)
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0]
        assert "RAILWAY_DEPLOYMENT_DRAINING_SECONDS" in warnings[0]
    assert f"downloads get {grace} s" in fit.describe(requested)


def test_settings_read_the_draining_and_hand_gunicorn_the_fitted_grace():
    settings = Settings.from_env(
        {
            **BASE_ENV,
            "GRACEFUL_TIMEOUT": "60",
            "RAILWAY_DEPLOYMENT_DRAINING_SECONDS": "40",
            "RAILWAY_ENVIRONMENT_ID": "e0c7",
        }
    )

    assert settings.draining == Draining(40, on_railway=True)
    assert settings.graceful_timeout_s == 60  # what was asked for stays visible
    assert settings.grace_s == 25
    assert gunicorn_options(settings)["graceful_timeout"] == 25


def test_without_the_variable_nothing_changes_off_railway():
    settings = Settings.from_env(BASE_ENV)

    assert settings.draining == Draining(None, on_railway=False)
    assert gunicorn_options(settings)["graceful_timeout"] == settings.graceful_timeout_s == 60


@pytest.mark.parametrize("value", ["ninety", "-1", "1.5"])
def test_a_draining_time_that_is_not_a_number_refuses_to_start(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE_ENV, "RAILWAY_DEPLOYMENT_DRAINING_SECONDS": value})
    assert any(problem.startswith("RAILWAY_DEPLOYMENT_DRAINING_SECONDS must be") for problem in raised.value.problems)
