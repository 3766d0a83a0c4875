//! `tally demo`: a realistic, deterministic history, so a new user can try every
//! command at once.
//!
//! The events are built and finished exactly as the SDK finishes them and written with
//! the store's own batch path, so they exercise the same code as real recording. They
//! carry a demo install id and are hashed under a secret derived from the seed: the same
//! seed and `--now` give byte-identical output on any machine in the same time zone.

use std::io::Write;

use clap::Args;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use tally_core::hashing::SECRET_LEN;
use tally_core::{Event, EventBuilder, EventContext, KeyedHasher, Level, Source};
use tally_store::{DropCounts, OpenOptions, Store};

use super::{CliError, Target, human};

/// Options of `tally demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Days of history, ending now.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// About how many events to write.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=50_000_000))]
    pub events: u64,
    /// Seed of the generator: the same seed gives the same history.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// A command the demo runs, and how it behaves.
struct CommandProfile {
    command: &'static str,
    weight: u32,
    median_ms: f64,
    failure_rate: f64,
    categories: &'static [&'static str],
}

const COMMANDS: &[CommandProfile] = &[
    CommandProfile {
        command: "task done",
        weight: 30,
        median_ms: 40.0,
        failure_rate: 0.02,
        categories: &["not_found"],
    },
    CommandProfile {
        command: "status",
        weight: 24,
        median_ms: 15.0,
        failure_rate: 0.005,
        categories: &["io"],
    },
    CommandProfile {
        command: "workspace create",
        weight: 14,
        median_ms: 900.0,
        failure_rate: 0.06,
        categories: &["already_exists", "invalid_name", "io"],
    },
    CommandProfile {
        command: "build",
        weight: 12,
        median_ms: 12_000.0,
        failure_rate: 0.09,
        categories: &["compile_error"],
    },
    CommandProfile {
        command: "sync",
        weight: 10,
        median_ms: 2_500.0,
        failure_rate: 0.15,
        categories: &["network", "timeout"],
    },
    CommandProfile {
        command: "workspace destroy",
        weight: 8,
        median_ms: 300.0,
        failure_rate: 0.12,
        categories: &["not_found", "permission"],
    },
];

const TEMPLATES: &[&str] = &["rust", "node", "python", "empty"];
const BATCH: usize = 500;

/// A small deterministic generator (SplitMix64): the demo must not depend on a
/// platform's random source, or the same seed would give different histories.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// Standard normal, by Box-Muller.
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let value = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
        out
    }
}

/// Writes the demo history into `target`'s store, which must be empty.
pub fn run_demo(target: &Target, args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let settings = target.settings();
    let mut store = Store::open(&settings.dir, &OpenOptions::default())?;
    refuse_unless_empty(&store, target)?;
    let now = target.now();
    let mut random = Random(args.seed);
    let secret: [u8; SECRET_LEN] = random.bytes();
    let identity = DemoInstall {
        app: &target.app,
        hasher: KeyedHasher::new(&secret),
        install_id: uuid::Builder::from_random_bytes(random.bytes()).into_uuid().to_string(),
    };
    let mut history = History::new(random, now, args.days);
    let mut written = 0u64;
    let mut sessions = 0u64;
    while written + (history.events.len() as u64) < args.events {
        history.session(&identity);
        sessions += 1;
        if history.events.len() >= BATCH {
            written += flush(&mut store, &mut history.events)?;
        }
    }
    written += flush(&mut store, &mut history.events)?;
    // Leave the history in the main file, not in a large WAL the next reader recovers.
    store.checkpoint_now(OpenOptions::default().busy_timeout)?;
    writeln!(
        out,
        "wrote {} events in {} sessions over {} days into {}",
        human::count(written),
        human::count(sessions),
        args.days,
        settings.dir.join(tally_store::DB_FILE_NAME).display()
    )?;
    writeln!(out, "try: tally --app {} stats", target.app)?;
    Ok(())
}

/// The demo writes only into an empty store, so it never mixes with real data.
fn refuse_unless_empty(store: &Store, target: &Target) -> Result<(), CliError> {
    let existing = store.status()?;
    if existing.events_ever > 0 {
        return Err(CliError::Usage(format!(
            "the store of {} already holds {} events; the demo only writes into an empty store \
             (choose another --app or --dir, or run `purge` first)",
            target.app,
            human::count(existing.events_ever)
        )));
    }
    Ok(())
}

/// The demo install: its app, id and the hasher keyed by its seed-derived secret.
struct DemoInstall<'a> {
    app: &'a str,
    hasher: KeyedHasher,
    install_id: String,
}

/// The history being generated: the generator, the period, and what it made so far.
/// Every random draw happens in a fixed order, so a seed always gives the same history.
struct History {
    random: Random,
    now: Timestamp,
    start: Timestamp,
    /// Milliseconds in which a session may start.
    span_ms: i64,
    tz: TimeZone,
    total_weight: u32,
    /// Workspaces created so far, for later commands to use.
    workspaces: Vec<String>,
    /// Finished events not yet written.
    events: Vec<Event>,
}

impl History {
    fn new(random: Random, now: Timestamp, days: u32) -> History {
        let start = now.checked_sub((i64::from(days) * 24).hours()).unwrap_or(now);
        History {
            random,
            now,
            start,
            // Sessions start at least an hour before now, so that every event of the
            // history (a session lasts well under an hour) lies inside the period.
            span_ms: (now.as_millisecond() - start.as_millisecond() - 3_600_000).max(1),
            tz: TimeZone::system(),
            total_weight: COMMANDS.iter().map(|profile| profile.weight).sum(),
            workspaces: Vec::new(),
            events: Vec::with_capacity(BATCH * 2),
        }
    }

    /// One session: its start, one to five commands with the events they cause, and
    /// its end.
    fn session(&mut self, install: &DemoInstall<'_>) {
        let session_start = self.session_start();
        let session_id =
            uuid::Builder::from_unix_timestamp_millis(session_start.as_millisecond() as u64, &self.random.bytes())
                .into_uuid()
                .to_string();
        let context = EventContext {
            app: install.app,
            app_version: if session_start.as_millisecond() > self.now.as_millisecond() - 10 * 86_400_000 {
                "1.5.0"
            } else {
                "1.4.2"
            },
            source: Source::Cli,
            session_id: &session_id,
            install_id: &install.install_id,
            hasher: &install.hasher,
            level: Level::Enhanced,
        };
        let mut clock = session_start;
        self.push(
            &context,
            Event::builder("session", "session_started")
                .prop("os", "linux")
                .prop("arch", "x86_64")
                .prop("cpu_count", 8)
                .prop("ci", false),
            clock,
        );
        let commands_in_session = 1 + self.random.below(5);
        let mut previous: Option<&str> = None;
        for _ in 0..commands_in_session {
            let profile = self.pick_command(previous);
            clock = self.command(&context, profile, clock);
            previous = Some(profile.command);
        }
        let session_ms = (clock.as_millisecond() - session_start.as_millisecond()).max(0) as u64;
        self.push(
            &context,
            Event::builder("session", "session_ended").duration_ms(session_ms),
            clock,
        );
    }

    /// A plausible local time for a session to start: weekdays more than weekends,
    /// working hours far more than nights.
    fn session_start(&mut self) -> Timestamp {
        loop {
            let candidate = Timestamp::from_millisecond(
                self.start.as_millisecond() + self.random.below(self.span_ms as u64) as i64,
            )
            .unwrap_or(self.now);
            let local = candidate.to_zoned(self.tz.clone());
            let hour_weight = match local.hour() {
                9..=11 => 1.0,
                14..=17 => 0.9,
                12 | 13 | 18 | 19 => 0.5,
                20..=22 => 0.25,
                _ => 0.03,
            };
            let weekday_weight = if local.weekday().to_monday_one_offset() >= 6 {
                0.35
            } else {
                1.0
            };
            if self.random.unit() < hour_weight * weekday_weight {
                return candidate;
            }
        }
    }

    /// The next command, by weight; after creating a workspace, people usually finish a
    /// task in it next.
    fn pick_command(&mut self, previous: Option<&str>) -> &'static CommandProfile {
        if previous == Some("workspace create") && self.random.unit() < 0.85 {
            return &COMMANDS[0];
        }
        let mut pick = self.random.below(u64::from(self.total_weight)) as u32;
        COMMANDS
            .iter()
            .find(|profile| {
                if pick < profile.weight {
                    true
                } else {
                    pick -= profile.weight;
                    false
                }
            })
            .unwrap_or(&COMMANDS[0])
    }

    /// Runs `profile` at `clock`: its domain event on success, `command_executed`, an
    /// error event on failure. Returns when the next command starts.
    fn command(&mut self, context: &EventContext<'_>, profile: &CommandProfile, clock: Timestamp) -> Timestamp {
        // Builds got slower in the last week: a trend for `insights` to find.
        let recent = self.now.as_millisecond() - clock.as_millisecond() < 7 * 86_400_000;
        let slowdown = if profile.command == "build" && recent {
            1.45
        } else {
            1.0
        };
        let duration = (profile.median_ms * slowdown * (0.6 * self.random.normal()).exp())
            .round()
            .max(1.0) as u64;
        let failed = self.random.unit() < profile.failure_rate;
        let category = profile.categories[self.random.below(profile.categories.len() as u64) as usize];
        let finished = clock.checked_add((duration as i64).milliseconds()).unwrap_or(clock);
        let workspace = self.workspace_for(profile, failed);
        if !failed {
            self.domain_event(context, profile, workspace.as_deref(), finished);
        }
        let mut executed = Event::builder("command", "command_executed")
            .command(profile.command)
            .duration_ms(duration)
            .success(!failed);
        if let Some(workspace) = &workspace {
            executed = executed.workspace(workspace.clone());
        }
        if failed {
            executed = executed.error_category(category);
        }
        self.push(context, executed, finished);
        if failed {
            self.push(
                context,
                Event::builder("error", "error_occurred")
                    .command(profile.command)
                    .error_category(category),
                finished,
            );
        }
        // A new workspace is put to use at once; otherwise people pause and think.
        let think = if profile.command == "workspace create" {
            5_000 + self.random.below(60_000)
        } else {
            10_000 + self.random.below(8 * 60_000)
        };
        finished.checked_add((think as i64).milliseconds()).unwrap_or(finished)
    }

    /// The workspace a command works in: a new one for `workspace create` (kept when it
    /// succeeds), an existing one for commands inside a workspace.
    fn workspace_for(&mut self, profile: &CommandProfile, failed: bool) -> Option<String> {
        match profile.command {
            "workspace create" => {
                let name = format!("project-{}", self.random.below(40));
                if !failed {
                    self.workspaces.push(name.clone());
                }
                Some(name)
            }
            "workspace destroy" | "task done" | "build" if !self.workspaces.is_empty() => {
                Some(self.workspaces[self.random.below(self.workspaces.len() as u64) as usize].clone())
            }
            _ => None,
        }
    }

    /// What a successful command did, for the commands that have a domain event.
    fn domain_event(
        &mut self,
        context: &EventContext<'_>,
        profile: &CommandProfile,
        workspace: Option<&str>,
        at: Timestamp,
    ) {
        let domain = match profile.command {
            "workspace create" => Some(Event::builder("workspace", "workspace_created").prop(
                "template",
                TEMPLATES[self.random.below(TEMPLATES.len() as u64) as usize],
            )),
            "workspace destroy" => Some(Event::builder("workspace", "workspace_destroyed")),
            "task done" => Some(
                Event::builder("task", "task_completed").target("task", format!("task-{}", self.random.below(500))),
            ),
            _ => None,
        };
        if let Some(mut domain) = domain.map(|event| event.command(profile.command)) {
            if let Some(workspace) = workspace {
                domain = domain.workspace(workspace.to_owned());
            }
            self.push(context, domain, at);
        }
    }

    /// Finishes `builder` as the SDK would, with an id drawn from the generator.
    fn push(&mut self, context: &EventContext<'_>, builder: EventBuilder, at: Timestamp) {
        let id =
            uuid::Builder::from_unix_timestamp_millis(at.as_millisecond() as u64, &self.random.bytes()).into_uuid();
        if let Ok(Some(event)) = builder.id(id).ts(at).finish(context) {
            self.events.push(event);
        }
    }
}

fn flush(store: &mut Store, events: &mut Vec<Event>) -> Result<u64, CliError> {
    events.sort_by_key(|event| event.ts);
    let outcome = store.insert_batch(events, DropCounts::default())?;
    events.clear();
    Ok(outcome.inserted as u64)
}
