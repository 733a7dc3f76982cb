"""Console tests run against a live gateway (the gateway tests' fixtures) and, for end-to-end
flows, a real headless Chromium (``tests.console.browser``)."""

from tests.console.browser import browser, page, screenshots
from tests.gateway.conftest import engine_gateway, gateway, gateway_settings, model_table

__all__ = [
    "browser",
    "engine_gateway",
    "gateway",
    "gateway_settings",
    "model_table",
    "page",
    "screenshots",
]
