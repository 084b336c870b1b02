"""The deployment home and its validated TOML config."""

from cardtally.config._home import (
    CONFIG_FILE,
    HOME_ENV,
    LOG_FORMATS,
    LOG_LEVELS,
    SCHEMA,
    Config,
    DayendConfig,
    IssuerConfig,
    LogConfig,
    SwitchConfig,
    WireConfig,
    config_path,
    default_config_text,
    load_config,
    resolve_database_url,
    resolve_home,
)
from cardtally.config._schema import ConfigError

__all__ = [
    "CONFIG_FILE",
    "HOME_ENV",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SCHEMA",
    "Config",
    "ConfigError",
    "DayendConfig",
    "IssuerConfig",
    "LogConfig",
    "SwitchConfig",
    "WireConfig",
    "config_path",
    "default_config_text",
    "load_config",
    "resolve_database_url",
    "resolve_home",
]
