"""Configuration: ``model`` (what it holds, with the defaults), ``values`` (what each value
may be), ``reading`` (the TOML file read and checked, every error naming file and key)."""

from core.config.model import (
    BUCKET_TYPES,
    CREDENTIAL_KEYS,
    HOT_WINDOW,
    INDEX_MEMORY,
    BucketConfig,
    Config,
    ConfigError,
    GeneralConfig,
    default_config_path,
    default_state_dir,
)
from core.config.reading import load_config, parse_config
from core.config.values import parse_day, parse_size

__all__ = ["BUCKET_TYPES", "CREDENTIAL_KEYS", "HOT_WINDOW", "INDEX_MEMORY", "BucketConfig",
           "Config", "ConfigError", "GeneralConfig", "default_config_path", "default_state_dir",
           "load_config", "parse_config", "parse_day", "parse_size"]
