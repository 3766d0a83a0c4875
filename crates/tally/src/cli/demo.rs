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
    let existing = store.status()?;
    if existing.events_ever > 0 {
        return Err(CliError::Usage(format!(
            "the store of {} already holds {} events; the demo only writes into an empty store \
             (choose another --app or --dir, or run `purge` first)",
            target.app,
            human::count(existing.events_ever)
        )));
    }
    let now = target.now();
    let tz = TimeZone::system();
    let mut random = Random(args.seed);
    let secret: [u8; SECRET_LEN] = random.bytes();
    let hasher = KeyedHasher::new(&secret);
    let install_id = uuid::Builder::from_random_bytes(random.bytes()).into_uuid().to_string();
    let start = now.checked_sub((i64::from(args.days) * 24).hours()).unwrap_or(now);
    // Sessions start at least an hour before now, so that every event of the history
    // (a session lasts well under an hour) lies inside the period.
    let span_ms = (now.as_millisecond() - start.as_millisecond() - 3_600_000).max(1);
    let total_weight: u32 = COMMANDS.iter().map(|profile| profile.weight).sum();

    let mut events: Vec<Event> = Vec::with_capacity(BATCH * 2);
    let mut written = 0u64;
    let mut sessions = 0u64;
    let mut workspaces: Vec<String> = Vec::new();
    while written + (events.len() as u64) < args.events {
        // A session starts at a plausible local time: weekdays more than weekends,
        // working hours far more than nights.
        let session_start = loop {
            let candidate = Timestamp::from_millisecond(start.as_millisecond() + random.below(span_ms as u64) as i64)
                .unwrap_or(now);
            let local = candidate.to_zoned(tz.clone());
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
            if random.unit() < hour_weight * weekday_weight {
                break candidate;
            }
        };
        sessions += 1;
        let session_id =
            uuid::Builder::from_unix_timestamp_millis(session_start.as_millisecond() as u64, &random.bytes())
                .into_uuid()
                .to_string();
        let context = EventContext {
            app: &target.app,
            app_version: if session_start.as_millisecond() > now.as_millisecond() - 10 * 86_400_000 {
                "1.5.0"
            } else {
                "1.4.2"
            },
            source: Source::Cli,
            session_id: &session_id,
            install_id: &install_id,
            hasher: &hasher,
            level: Level::Enhanced,
        };
        let mut clock = session_start;
        let push = |builder: EventBuilder, at: Timestamp, random: &mut Random, events: &mut Vec<Event>| {
            let id = uuid::Builder::from_unix_timestamp_millis(at.as_millisecond() as u64, &random.bytes()).into_uuid();
            if let Ok(Some(event)) = builder.id(id).ts(at).finish(&context) {
                events.push(event);
            }
        };
        push(
            Event::builder("session", "session_started")
                .prop("os", "linux")
                .prop("arch", "x86_64")
                .prop("cpu_count", 8)
                .prop("ci", false),
            clock,
            &mut random,
            &mut events,
        );
        let commands_in_session = 1 + random.below(5);
        let mut previous: Option<&str> = None;
        for _ in 0..commands_in_session {
            // After creating a workspace, people usually finish a task in it next.
            let profile = if previous == Some("workspace create") && random.unit() < 0.85 {
                &COMMANDS[0]
            } else {
                let mut pick = random.below(u64::from(total_weight)) as u32;
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
            };
            // Builds got slower in the last week: a trend for `insights` to find.
            let recent = now.as_millisecond() - clock.as_millisecond() < 7 * 86_400_000;
            let slowdown = if profile.command == "build" && recent {
                1.45
            } else {
                1.0
            };
            let duration = (profile.median_ms * slowdown * (0.6 * random.normal()).exp())
                .round()
                .max(1.0) as u64;
            let failed = random.unit() < profile.failure_rate;
            let category = profile.categories[random.below(profile.categories.len() as u64) as usize];
            let finished = clock.checked_add((duration as i64).milliseconds()).unwrap_or(clock);
            let workspace = match profile.command {
                "workspace create" => {
                    let name = format!("project-{}", random.below(40));
                    if !failed {
                        workspaces.push(name.clone());
                    }
                    Some(name)
                }
                "workspace destroy" | "task done" | "build" if !workspaces.is_empty() => {
                    Some(workspaces[random.below(workspaces.len() as u64) as usize].clone())
                }
                _ => None,
            };
            if !failed {
                let domain = match profile.command {
                    "workspace create" => Some(
                        Event::builder("workspace", "workspace_created")
                            .prop("template", TEMPLATES[random.below(TEMPLATES.len() as u64) as usize]),
                    ),
                    "workspace destroy" => Some(Event::builder("workspace", "workspace_destroyed")),
                    "task done" => Some(
                        Event::builder("task", "task_completed").target("task", format!("task-{}", random.below(500))),
                    ),
                    _ => None,
                };
                if let Some(mut domain) = domain.map(|event| event.command(profile.command)) {
                    if let Some(workspace) = &workspace {
                        domain = domain.workspace(workspace.clone());
                    }
                    push(domain, finished, &mut random, &mut events);
                }
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
            push(executed, finished, &mut random, &mut events);
            if failed {
                push(
                    Event::builder("error", "error_occurred")
                        .command(profile.command)
                        .error_category(category),
                    finished,
                    &mut random,
                    &mut events,
                );
            }
            previous = Some(profile.command);
            // A new workspace is put to use at once; otherwise people pause and think.
            let think = if profile.command == "workspace create" {
                5_000 + random.below(60_000)
            } else {
                10_000 + random.below(8 * 60_000)
            };
            clock = finished.checked_add((think as i64).milliseconds()).unwrap_or(finished);
        }
        let session_ms = (clock.as_millisecond() - session_start.as_millisecond()).max(0) as u64;
        push(
            Event::builder("session", "session_ended").duration_ms(session_ms),
            clock,
            &mut random,
            &mut events,
        );
        if events.len() >= BATCH {
            written += flush(&mut store, &mut events)?;
        }
    }
    written += flush(&mut store, &mut events)?;
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

fn flush(store: &mut Store, events: &mut Vec<Event>) -> Result<u64, CliError> {
    events.sort_by_key(|event| event.ts);
    let outcome = store.insert_batch(events, DropCounts::default())?;
    events.clear();
    Ok(outcome.inserted as u64)
}
