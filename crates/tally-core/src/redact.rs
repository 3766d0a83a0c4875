//! Redaction of free text kept at level `full` (error messages).
//!
//! Error messages from the OS and libraries routinely carry paths, user names, hosts and
//! credentials. [`redact`] replaces each such span with a placeholder that says what was
//! there (`<path>`, `<email>`, `<secret>`, `<ip>`, `<url>`), so the message stays useful
//! ("permission denied: <path>") without the personal part. It errs on the side of
//! removing too much: a false positive costs a word, a false negative leaks data.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// One pass over the text; alternation order decides which reading wins where two
/// overlap (a URL is redacted whole before its host could be read as an IP).
static PATTERN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let url = r"(?P<url>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'`]+)";
    let email = r"(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b)";
    // key=value / key: value pairs whose key says they hold a secret.
    let assignment = r"(?P<assign>(?i:\b[a-z0-9_-]*(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|access[_-]?key|auth|credential|session)[a-z0-9_-]*)\s*[:=]\s*)(?P<assigned>(?i:(?:bearer|basic|token)\s+)?[^\s,;'`]+)";
    let bearer = r"(?P<bearer>(?i:\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,})";
    // Well-known credential shapes: GitHub, Slack, AWS, OpenAI-style, JWTs, private keys.
    let known = r"(?P<known>\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{16,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})|-----BEGIN [A-Z ]*PRIVATE KEY-----)";
    // Long runs of hex or base64 are keys, hashes or tokens far more often than words.
    let opaque =
        r"(?P<opaque>\b[A-Fa-f0-9]{32,}\b|\b[A-Za-z0-9+/_-]*[0-9][A-Za-z0-9+/_-]*[A-Za-z][A-Za-z0-9+/_-]{30,}={0,2})";
    let ipv4 = r"(?P<ipv4>\b(?:\d{1,3}\.){3}\d{1,3}\b)";
    // Full eight-group form, or a compressed form with `::`; clock times ("12:30:45")
    // have neither and are kept.
    let ipv6 = r#"(?P<ipv6>\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?)|(?P<ip6pre>^|[\s\[(=,'"])(?P<ip6lead>::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?)"#;
    // Paths: absolute Unix, home-relative, relative with ./ or ../, Windows drive and UNC.
    // A path must start a word (after a space, quote, bracket, `=` or `:`), so that
    // ratios such as "2/5" are left alone.
    let path = r#"(?P<pathpre>^|[\s'"(\[=:,])(?P<path>(?:~[A-Za-z0-9._-]*|\.{1,2})?/[^\s'"`,;:)\]}]+|[A-Za-z]:\\[^\s'"`,;)\]}]*|\\\\[^\s'"`,;)\]}]+)"#;
    let all = [url, email, assignment, bearer, known, opaque, ipv4, ipv6, path].join("|");
    // A test proves the pattern compiles; should a build ever break it, `redact`
    // removes the whole text rather than panic on the flush thread.
    Regex::new(&all).ok()
});

/// Returns `text` with paths, e-mail addresses, secrets, IP addresses and URLs replaced
/// by placeholders, and NUL characters (which no event may carry) by U+FFFD.
pub fn redact(text: &str) -> String {
    let Some(pattern) = PATTERN.as_ref() else {
        return "<redacted>".to_owned();
    };
    let text = text.replace('\0', "\u{FFFD}");
    pattern
        .replace_all(&text, |caps: &Captures<'_>| {
            if caps.name("url").is_some() {
                "<url>".to_owned()
            } else if caps.name("email").is_some() {
                "<email>".to_owned()
            } else if let Some(key) = caps.name("assign") {
                format!("{}<secret>", key.as_str())
            } else if caps.name("bearer").is_some() || caps.name("known").is_some() || caps.name("opaque").is_some() {
                "<secret>".to_owned()
            } else if caps.name("ipv4").is_some() || caps.name("ipv6").is_some() {
                "<ip>".to_owned()
            } else if let Some(before) = caps.name("ip6pre") {
                format!("{}<ip>", before.as_str())
            } else {
                let before = caps.name("pathpre").map_or("", |m| m.as_str());
                format!("{before}<path>")
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn nul_characters_never_reach_an_event() {
        assert_eq!(redact("read\0failed"), "read\u{FFFD}failed");
    }

    #[test]
    fn pattern_compiles() {
        assert!(super::PATTERN.is_some());
    }

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(redact(input), expected, "input: {input}");
    }

    #[test]
    fn home_and_other_paths() {
        check(
            "failed to open /home/alice/secret-project/Cargo.toml: permission denied",
            "failed to open <path>: permission denied",
        );
        check("cannot read ~/notes/plan.md", "cannot read <path>");
        check("no such file ./build/out.o", "no such file <path>");
        check(
            r"access denied C:\Users\Bob\Documents\plan.docx",
            "access denied <path>",
        );
        check(r"share \\fileserver\team\plan.txt missing", "share <path> missing");
        check("lock held on '/Users/carol/w/.git/index.lock'", "lock held on '<path>'");
    }

    #[test]
    fn emails_urls_and_ips() {
        check("invite sent to dana.smith+x@example.co.uk", "invite sent to <email>");
        check(
            "GET https://api.example.com/v1/users?token=abc failed",
            "GET <url> failed",
        );
        check("connect to 192.168.1.20:5432 refused", "connect to <ip>:5432 refused");
        check("bind [::1]:80 failed", "bind [<ip>]:80 failed");
        check("peer fe80::1ff:fe23:4567:890a unreachable", "peer <ip> unreachable");
        check("started 12:30:45, std::io::Error", "started 12:30:45, std::io::Error");
    }

    #[test]
    fn tokens_and_keys() {
        check(
            "auth failed for ghp_abcdefghijklmnopqrstuvwxyz0123",
            "auth failed for <secret>",
        );
        check("bad key AKIAIOSFODNN7EXAMPLE", "bad key <secret>");
        check("Authorization: Bearer abc.def-ghi_jkl", "Authorization: <secret>");
        check("password=hunter2 rejected", "password=<secret> rejected");
        check("API_KEY: sk-proj-aaaaaaaaaaaaaaaaaaaaa", "API_KEY: <secret>");
        check(
            "digest 9f2c07ab9f2c07ab9f2c07ab9f2c07ab mismatch",
            "digest <secret> mismatch",
        );
    }

    #[test]
    fn ordinary_messages_are_kept() {
        check(
            "workspace already exists (os error 17)",
            "workspace already exists (os error 17)",
        );
        check("timed out after 30s at step 2/5", "timed out after 30s at step 2/5");
    }
}
