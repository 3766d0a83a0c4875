//! Settings: a TOML file in the platform config directory, overridden by environment.
//!
//! Precedence, strongest first: `DO_NOT_TRACK` (any value but empty or `0` turns
//! recording off), `<APP>_TELEMETRY` (`off|basic|enhanced|full`), the config file,
//! the defaults (level `basic`, upload `local`). `<APP>` is the app name upper-cased
//! with `-` as `_`. A value that cannot be understood never records more than asked:
//! an unreadable config file or a bad `<APP>_TELEMETRY` turns recording off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tally_core::Level;
use tally_store::RetentionPolicy;

/// When events leave the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// Nothing leaves the machine.
    #[default]
    Local,
    /// Only an explicit `sync` uploads.
    Sync,
    /// Uploads in the background to the configured endpoint.
    Auto,
    /// Only an explicit `sync` uploads, and only per-day counts of complete days, never
    /// events (`tally_core::counts`).
    Counts,
}

impl UploadMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMode::Local => "local",
            UploadMode::Sync => "sync",
            UploadMode::Auto => "auto",
            UploadMode::Counts => "counts",
        }
    }
}

impl std::fmt::Display for UploadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UploadMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "local" => Ok(UploadMode::Local),
            "sync" => Ok(UploadMode::Sync),
            "auto" => Ok(UploadMode::Auto),
            "counts" => Ok(UploadMode::Counts),
            other => Err(format!(
                "upload: must be one of local, sync, auto, counts (got {other:?})"
            )),
        }
    }
}

/// What speaks at the endpoint: Tally's batch API, or any OTLP/HTTP logs receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A Tally collector: `POST /v1/events/batch`.
    #[default]
    Tally,
    /// An OTLP/HTTP receiver: `POST /v1/logs` in protobuf (see `crate::sync::OtlpTransport`).
    Otlp,
}

impl std::str::FromStr for EndpointKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "tally" => Ok(EndpointKind::Tally),
            "otlp" => Ok(EndpointKind::Otlp),
            other => Err(format!("endpoint-kind: must be tally or otlp (got {other:?})")),
        }
    }
}

/// The config file, as written by `tally config set` and `on`/`off`/`level`.
/// Every field is optional; a missing one takes its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `off`, `basic`, `enhanced` or `full`; the environment overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "level_text")]
    pub level: Option<Level>,
    /// Whether events may leave the machine: `local` (never, the default), `sync`, `auto`,
    /// or `counts` (per-day counts only, on `sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadMode>,
    /// The collector's base URL (`https://telemetry.example.com`), without a trailing slash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What speaks at the endpoint (`tally` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_kind: Option<EndpointKind>,
    /// The collector's ingest key for this app (`tly_ingest_...`), sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When upload was turned on (RFC 3339): events recorded before are uploaded only
    /// with `sync --include-history`. Written by `config set upload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_since: Option<String>,
    /// Least time between two background uploads in `auto` mode, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_interval_minutes: Option<u32>,
    /// Where `telemetry.db` lives, instead of the platform's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Days raw events are kept before folding into rollups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Size cap of the store, in megabytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<u64>,
}

mod level_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use tally_core::Level;

    pub(super) fn serialize<S: Serializer>(level: &Option<Level>, serializer: S) -> Result<S::Ok, S::Error> {
        match level {
            Some(level) => serializer.serialize_str(level.as_str()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Level>, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Some).map_err(D::Error::custom)
    }
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The config file being read or written.
        path: PathBuf,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad value.
    #[error("{path}: {message}")]
    Parse {
        /// The config file that failed to parse.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// No home directory to put the config or store in.
    #[error("no home directory: set {0}")]
    NoHome(String),
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(ConfigFile::default());
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.message().to_owned(),
        })
    }

    /// Writes the file atomically (a temporary file renamed over it), so a crash never
    /// leaves half a config.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let text = toml::to_string_pretty(self).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        let temporary = path.with_extension(format!("toml.tmp-{}", std::process::id()));
        std::fs::write(&temporary, text).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

/// The environment variable prefix for `app`: `nexus` gives `NEXUS`.
pub fn env_prefix(app: &str) -> String {
    app.to_ascii_uppercase().replace('-', "_")
}

/// Where `app`'s config file and store live, before the file's own `dir` is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file: `<APP>_TELEMETRY_CONFIG`, or `telemetry.toml` in the platform
    /// config directory (`~/.config/<app>/` on Linux).
    pub config_file: PathBuf,
    /// The store directory from `<APP>_TELEMETRY_DIR`, if set.
    pub dir_from_env: Option<PathBuf>,
    /// The platform data directory's default (`~/.local/share/<app>/telemetry` on Linux).
    pub default_dir: Option<PathBuf>,
}

impl Paths {
    /// Reads the environment for `app`.
    pub fn for_app(app: &str) -> Paths {
        let prefix = env_prefix(app);
        let project = directories::ProjectDirs::from("", "", app);
        let config_file = non_empty_env(&format!("{prefix}_TELEMETRY_CONFIG"))
            .map(PathBuf::from)
            .or_else(|| project.as_ref().map(|dirs| dirs.config_dir().join("telemetry.toml")))
            .unwrap_or_else(|| PathBuf::from(format!(".{app}-telemetry.toml")));
        Paths {
            config_file,
            dir_from_env: non_empty_env(&format!("{prefix}_TELEMETRY_DIR")).map(PathBuf::from),
            default_dir: project.map(|dirs| dirs.data_dir().join("telemetry")),
        }
    }

    /// The store directory: environment, then the config file's `dir`, then the default.
    pub fn store_dir(&self, config: &ConfigFile) -> Result<PathBuf, ConfigError> {
        self.dir_from_env
            .clone()
            .or_else(|| config.dir.clone())
            .or_else(|| self.default_dir.clone())
            .ok_or_else(|| ConfigError::NoHome("HOME or the app's _TELEMETRY_DIR".into()))
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Whether `DO_NOT_TRACK` asks for no recording: set to anything but empty or `0`.
pub fn do_not_track() -> bool {
    std::env::var_os("DO_NOT_TRACK").is_some_and(|value| !value.is_empty() && value != "0")
}

/// Where the level in force came from, for `status` and debug output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelSource {
    /// `DO_NOT_TRACK` is set.
    DoNotTrack,
    /// `<APP>_TELEMETRY` is set (the variable's name).
    Environment(String),
    /// The config file says so.
    ConfigFile,
    /// Nothing says otherwise.
    Default,
    /// The host app turned telemetry off for this run.
    Host,
}

impl std::fmt::Display for LevelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LevelSource::DoNotTrack => f.write_str("DO_NOT_TRACK is set"),
            LevelSource::Environment(name) => write!(f, "{name} is set"),
            LevelSource::ConfigFile => f.write_str("config file"),
            LevelSource::Default => f.write_str("default"),
            LevelSource::Host => f.write_str("turned off by the app"),
        }
    }
}

/// Everything the SDK needs to know, resolved from file and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The level in force.
    pub level: Level,
    /// Where that level came from.
    pub level_source: LevelSource,
    /// Whether events may leave the machine, and when.
    pub upload: UploadMode,
    /// The collector's base URL; `None` until the user sets one.
    pub endpoint: Option<String>,
    /// What speaks at the endpoint: Tally's own collector, or any OTLP/HTTP logs receiver.
    pub endpoint_kind: EndpointKind,
    /// The collector's ingest key for this app; `None` until the user sets one.
    pub key: Option<String>,
    /// When upload was turned on; `None` when it never was (or the file was edited by
    /// hand), in which case the first sync takes its own start as that moment.
    pub upload_since: Option<jiff::Timestamp>,
    /// Least time between two background uploads in `auto` mode.
    pub auto_interval: Duration,
    /// Where `telemetry.db` lives: the file's `dir`, the environment, or the platform's
    /// data directory.
    pub dir: PathBuf,
    /// The config file these settings were read from (it need not exist).
    pub config_file: PathBuf,
    /// Print each event to stderr.
    pub debug: bool,
    /// Retention and size cap.
    pub retention: RetentionPolicy,
}

impl Settings {
    /// Resolves the settings of `app` from its config file and the environment.
    /// A problem with the file turns recording off; it is returned beside the settings
    /// so that the caller can say why.
    pub fn resolve(app: &str) -> (Settings, Option<ConfigError>) {
        let paths = Paths::for_app(app);
        let prefix = env_prefix(app);
        let debug = non_empty_env(&format!("{prefix}_TELEMETRY_DEBUG")).is_some_and(|value| value != "0");
        let (config, problem) = match ConfigFile::load(&paths.config_file) {
            Ok(config) => (config, None),
            Err(err) => (ConfigFile::default(), Some(err)),
        };
        let dir = paths
            .store_dir(&config)
            .unwrap_or_else(|_| PathBuf::from(format!(".{app}-telemetry")));
        let env_name = format!("{prefix}_TELEMETRY");
        let (level, level_source) = if do_not_track() {
            (Level::Off, LevelSource::DoNotTrack)
        } else if let Some(value) = non_empty_env(&env_name) {
            let level = match value.to_ascii_lowercase().as_str() {
                "0" | "false" | "no" => Level::Off,
                "1" | "true" | "yes" | "on" => config.level.unwrap_or_default().max(Level::Basic),
                other => other.parse().unwrap_or(Level::Off),
            };
            (level, LevelSource::Environment(env_name))
        } else if problem.is_some() {
            (Level::Off, LevelSource::ConfigFile)
        } else if let Some(level) = config.level {
            (level, LevelSource::ConfigFile)
        } else {
            (Level::default(), LevelSource::Default)
        };
        let defaults = RetentionPolicy::default();
        let settings = Settings {
            level,
            level_source,
            upload: config.upload.unwrap_or_default(),
            endpoint: config.endpoint,
            endpoint_kind: config.endpoint_kind.unwrap_or_default(),
            key: config.key,
            upload_since: config
                .upload_since
                .as_deref()
                .and_then(|text| tally_core::time::parse(text).ok()),
            auto_interval: Duration::from_secs(u64::from(config.auto_interval_minutes.unwrap_or(60)) * 60),
            dir,
            config_file: paths.config_file,
            debug,
            retention: RetentionPolicy {
                retention_days: config.retention_days.unwrap_or(defaults.retention_days),
                max_bytes: config
                    .max_size_mb
                    .map_or(defaults.max_bytes, |mb| mb.saturating_mul(1024 * 1024)),
            },
        };
        (settings, problem)
    }
}

/// Tunables of the in-memory buffer and flush thread.
#[derive(Debug, Clone, Copy)]
pub struct FlushSettings {
    /// Events held in memory before the oldest are dropped.
    pub buffer_capacity: usize,
    /// Most events written in one transaction.
    pub max_batch: usize,
    /// How often buffered events are written.
    pub flush_interval: Duration,
    /// Longest a host waits in `flush()` or on exit.
    pub shutdown_timeout: Duration,
    /// How long the flush thread waits on another process's write lock per attempt.
    pub busy_timeout: Duration,
}

impl Default for FlushSettings {
    fn default() -> Self {
        FlushSettings {
            buffer_capacity: 10_000,
            max_batch: 500,
            flush_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_millis(100),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telemetry.toml");
        let config = ConfigFile {
            level: Some(Level::Enhanced),
            upload: Some(UploadMode::Sync),
            retention_days: Some(30),
            ..ConfigFile::default()
        };
        config.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), config);

        std::fs::write(&path, "level = \"loud\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("level: must be one of off, basic, enhanced, full"),
            "{err}"
        );
        std::fs::write(&path, "levle = \"full\"\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `levle`"), "{err}");
    }

    #[test]
    fn env_prefix_upper_cases() {
        assert_eq!(env_prefix("nexus"), "NEXUS");
        assert_eq!(env_prefix("my-app"), "MY_APP");
    }
}
