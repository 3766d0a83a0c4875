//! Facts about the machine, recorded at level `enhanced` on the session's first event.
//!
//! Everything is read from memory or small files: no process is spawned (peers paid
//! tens of milliseconds per run calling `lsb_release`), and it runs on the flush thread,
//! never on the host's.

use tally_core::EventBuilder;

/// Environment variables whose presence means a CI system runs the app.
const CI_VARIABLES: &[&str] = &[
    "CI",
    "CONTINUOUS_INTEGRATION",
    "BUILD_NUMBER",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "TF_BUILD",
    "TEAMCITY_VERSION",
];

/// Adds `os`, `os_release`, `arch`, `cpu_count` and `ci` to `builder`.
pub(crate) fn describe(builder: EventBuilder) -> EventBuilder {
    let mut builder = builder
        .prop("os", std::env::consts::OS)
        .prop("arch", std::env::consts::ARCH)
        .prop("cpu_count", std::thread::available_parallelism().map_or(1, |n| n.get()))
        .prop("ci", ci_detected());
    if let Some(release) = os_release() {
        builder = builder.prop("os_release", release);
    }
    builder
}

/// Whether a known CI variable is set to something other than empty, `0` or `false`.
pub fn ci_detected() -> bool {
    CI_VARIABLES
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty() && value != "0" && value != "false"))
}

/// `ID-VERSION_ID` from `/etc/os-release` (`debian-12`), on Linux.
fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|value| value.trim_matches('"').to_owned())
    };
    let id = field("ID")?;
    let release = match field("VERSION_ID") {
        Some(version) => format!("{id}-{version}"),
        None => id,
    };
    // Props are short tokens; a distribution name that is not one is left out.
    let ok = release.len() <= 64
        && release
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(release)
}

/// The process's peak resident memory in KiB (`VmHWM`), on Linux.
pub(crate) fn peak_memory_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
