//! `dashboard`: a live, full-screen view of the store.
//!
//! Data and drawing are kept apart: [`load`] reads everything one screen needs into a
//! [`DashboardData`], and [`draw`] is a pure function of that data and the frame size,
//! so tests render it into a `TestBackend` without a terminal. The loop in [`run`] asks
//! SQLite's `data_version` four times a second whether another process committed, and
//! reloads only then, or every few seconds so that the minute buckets roll over while
//! nothing is being recorded.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, RenderDirection, Row, Sparkline, Table, Wrap};
use ratatui::{DefaultTerminal, Frame};
use tally_store::stats::{Period, PeriodSummary};
use tally_store::{Location, Store};

use super::{CliError, Target, human};

/// How often to ask the store whether another process committed.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often to reload anyway, so that minute buckets roll over on an idle store.
const PERIODIC_REFRESH: Duration = Duration::from_secs(5);
/// Minutes covered by the events-per-minute chart.
const MINUTES: usize = 60;
/// Recent errors loaded; a tall terminal shows more of them than a small one.
const RECENT_ERRORS: u64 = 50;
/// Below this size the panels would be too cramped to read, so a few lines of text
/// replace them.
const MIN_FULL_WIDTH: u16 = 60;
const MIN_FULL_HEIGHT: u16 = 16;
/// Width of the "Today" panel and of the figures beside the chart.
const TODAY_WIDTH: u16 = 24;
const RATE_WIDTH: u16 = 17;

/// Runs the dashboard until the user quits.
pub(crate) fn run(target: &Target) -> Result<(), CliError> {
    if !std::io::stdout().is_terminal() {
        return Err(CliError::Usage(
            "the dashboard needs a terminal; for output to a file or a pipe, use `stats` (or `stats --json`)"
                .to_owned(),
        ));
    }
    // Opening and the first load happen before the screen is taken over, so that their
    // errors print on the normal screen.
    let store = target.open_required()?;
    let tz = TimeZone::system();
    let title = target.title();
    let mut data = load(&store, &title, target.now(), &tz)?;
    let mut version = store.data_version()?;
    let mut loaded_at = Instant::now();

    let colour = colour_wanted(std::env::var_os("NO_COLOR").as_deref());
    let mut screen = Screen::enter()?;
    loop {
        screen.terminal.draw(|frame| draw_styled(frame, &data, colour))?;
        if event::poll(POLL_INTERVAL)? {
            let event = event::read()?;
            if should_quit(&event) {
                return Ok(());
            }
            // Anything else, a resize included, only needs the redraw at the top of the loop.
        }
        let current = store.data_version()?;
        if current != version || loaded_at.elapsed() >= PERIODIC_REFRESH {
            data = load(&store, &title, target.now(), &tz)?;
            version = current;
            loaded_at = Instant::now();
        }
    }
}

/// The alternate screen in raw mode, restored when dropped: on quit, on an error
/// returned with `?`, and while unwinding (ratatui's panic hook restores it even
/// before the panic message is printed).
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Screen, CliError> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // Raw mode may be on even though entering the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(err.into())
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// `q`, `Esc` and `Ctrl-C` quit (raw mode turns Ctrl-C into a key press, not a signal).
fn should_quit(event: &Event) -> bool {
    let Event::Key(key) = event else {
        return false;
    };
    // Some platforms also report releases; acting on presses only quits once.
    if key.kind == KeyEventKind::Release {
        return false;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// Everything one screen shows, read from the store at one moment.
#[derive(Debug, Clone, PartialEq)]
struct DashboardData {
    /// The app's title ("Nexus").
    title: String,
    /// Where the store lives.
    store_path: String,
    /// Local time of this load, `HH:MM:SS`.
    refreshed_at: String,
    /// Events per minute, oldest first; the last is the current (partial) minute.
    per_minute: Vec<u64>,
    /// The local day so far.
    today: PeriodSummary,
    /// Most recent failed commands, newest first.
    recent_errors: Vec<ErrorRow>,
}

/// One failed command, with its time already in local time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorRow {
    /// `14:03:22` today, `Nov 21 14:03` on an earlier day.
    when: String,
    command: String,
    category: String,
}

impl DashboardData {
    fn this_minute(&self) -> u64 {
        self.per_minute.last().copied().unwrap_or(0)
    }

    fn last_hour(&self) -> u64 {
        self.per_minute.iter().sum()
    }

    fn peak(&self) -> u64 {
        self.per_minute.iter().copied().max().unwrap_or(0)
    }
}

/// Reads what the dashboard shows as of `now`, with days and times in `tz`.
fn load(store: &Store, title: &str, now: Timestamp, tz: &TimeZone) -> Result<DashboardData, CliError> {
    let local_now = now.to_zoned(tz.clone());
    let midnight = local_now
        .start_of_day()
        .map(|zoned| zoned.timestamp())
        // Only a time zone without a midnight on this day gets here; the last 24 hours
        // are the closest reading of "today" then.
        .unwrap_or_else(|_| Period::last_days(now, 1).from);
    let today = store.summarize(
        &Period {
            from: midnight,
            to: now,
        },
        tz,
    )?;

    let current_minute = Timestamp::from_second(now.as_second().div_euclid(60) * 60).unwrap_or(now);
    let first_minute = current_minute
        .checked_sub(SignedDuration::from_mins(MINUTES as i64 - 1))
        .unwrap_or(Timestamp::MIN);
    let counts: std::collections::HashMap<String, u64> = store.events_per_minute(first_minute)?.into_iter().collect();
    let per_minute = (0..MINUTES as i64)
        .map(|i| {
            let minute = first_minute
                .checked_add(SignedDuration::from_mins(i))
                .unwrap_or(current_minute);
            let key = &tally_core::time::format(minute)[..16];
            counts.get(key).copied().unwrap_or(0)
        })
        .collect();

    let recent_errors = store
        .recent_errors(&Period::ALL, RECENT_ERRORS)?
        .into_iter()
        .map(|error| ErrorRow {
            when: local_time(&error.ts, &local_now, tz),
            command: error.command,
            category: error.category,
        })
        .collect();

    let store_path = match store.location() {
        Location::File(path) => path.display().to_string(),
        Location::Memory => "(in memory)".to_owned(),
    };
    Ok(DashboardData {
        title: title.to_owned(),
        store_path,
        refreshed_at: local_now.strftime("%H:%M:%S").to_string(),
        per_minute,
        today,
        recent_errors,
    })
}

/// An RFC 3339 time as the user's clock shows it: the time alone when it is today.
fn local_time(ts: &str, local_now: &jiff::Zoned, tz: &TimeZone) -> String {
    match tally_core::time::parse(ts) {
        Ok(ts) => {
            let zoned = ts.to_zoned(tz.clone());
            if zoned.date() == local_now.date() {
                zoned.strftime("%H:%M:%S").to_string()
            } else {
                zoned.strftime("%b %d %H:%M").to_string()
            }
        }
        Err(_) => ts.to_owned(),
    }
}

/// Draws the whole screen from `data`.
/// Whether to use colour, given the value of `NO_COLOR`: any non-empty value turns it
/// off (no-color.org). Bold and dim stay, since they are not colour.
fn colour_wanted(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|value| value.is_empty())
}

/// Draws the frame, then clears every colour from it when colour is unwanted, so no
/// drawing function needs to know.
fn draw_styled(frame: &mut Frame, data: &DashboardData, colour: bool) {
    draw(frame, data);
    if !colour {
        for cell in &mut frame.buffer_mut().content {
            cell.set_fg(Color::Reset);
            cell.set_bg(Color::Reset);
        }
    }
}

fn draw(frame: &mut Frame, data: &DashboardData) {
    let area = frame.area();
    if area.is_empty() {
        return;
    }
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    draw_header(frame, header, data);
    draw_footer(frame, footer);
    if area.width < MIN_FULL_WIDTH || area.height < MIN_FULL_HEIGHT {
        draw_compact(frame, body, data);
        return;
    }
    // The chart grows a little on tall terminals; the tables take the rest, the top
    // commands a bit more of it than the errors (10 and 7 rows at 80x24).
    let chart_height = (body.height / 4).clamp(5, 10);
    let [chart, middle, errors] = Layout::vertical([
        Constraint::Length(chart_height),
        Constraint::Fill(10),
        Constraint::Fill(7),
    ])
    .areas(body);
    let [commands, today] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(TODAY_WIDTH)]).areas(middle);
    draw_events_per_minute(frame, chart, data);
    draw_top_commands(frame, commands, data);
    draw_today(frame, today, data);
    draw_recent_errors(frame, errors, data);
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

fn panel(title: &str) -> Block<'_> {
    Block::bordered().title(Span::styled(format!(" {title} "), bold()))
}

/// `Nexus telemetry  /path/to/telemetry.db` on the left, the refresh time on the right;
/// a long path loses its start, which matters least.
fn draw_header(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let updated = format!("updated {} ", data.refreshed_at);
    let title = format!(" {} telemetry ", data.title);
    let room = (area.width as usize).saturating_sub(title.chars().count() + updated.chars().count() + 2);
    // A path cut to a few characters says nothing; leave it out then.
    let path = if room >= 12 {
        shorten_start(&data.store_path, room)
    } else {
        String::new()
    };
    let left = Line::from(vec![
        Span::styled(title, bold().fg(Color::Cyan)),
        Span::raw(" "),
        Span::styled(path, dim()),
    ]);
    frame.render_widget(Paragraph::new(left), area);
    if area.width as usize >= updated.chars().count() + 8 {
        frame.render_widget(Paragraph::new(Line::from(updated).right_aligned()), area);
    }
}

/// Keeps the end of `text` within `width` characters, marking the cut with `…`.
fn shorten_start(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = text.chars().skip(length - (width - 1)).collect();
    format!("…{tail}")
}

fn draw_footer(frame: &mut Frame, area: Rect) {
    let line = Line::from(vec![
        Span::styled(" q", bold()),
        Span::raw(" quit"),
        Span::styled("  ·  updates as events arrive", dim()),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// The figures beside a sparkline of the last hour, newest minute on the right.
fn draw_events_per_minute(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let block = panel("Events per minute");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [figures, chart] = Layout::horizontal([Constraint::Length(RATE_WIDTH), Constraint::Fill(1)])
        .spacing(1)
        .areas(inner);
    let figure = |value: u64, label: &str| {
        Line::from(vec![
            Span::styled(format!("{:>5}", human::count(value)), bold()),
            Span::raw(format!(" {label}")),
        ])
    };
    frame.render_widget(
        Paragraph::new(vec![
            figure(data.this_minute(), "this minute"),
            figure(data.last_hour(), "last hour"),
            figure(data.peak(), "peak/min"),
        ]),
        figures,
    );

    let [bars, axis] = Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(chart);
    if bars.is_empty() {
        return;
    }
    // Each minute is as many columns wide as fits; a narrow chart keeps the newest minutes.
    let width = bars.width as usize;
    let columns_per_minute = (width / MINUTES).max(1);
    let minutes_shown = (width / columns_per_minute).min(data.per_minute.len());
    // A quiet minute next to a busy one would round down to nothing; any activity
    // shows at least the lowest bar.
    let peak = data.peak();
    let lowest_bar = peak.div_ceil(u64::from(bars.height) * 8);
    let newest_first: Vec<u64> = data
        .per_minute
        .iter()
        .rev()
        .take(minutes_shown)
        .map(|&count| if count == 0 { 0 } else { count.max(lowest_bar) })
        .flat_map(|count| std::iter::repeat_n(count, columns_per_minute))
        .collect();
    frame.render_widget(
        Sparkline::default()
            .data(&newest_first)
            .max(peak)
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(Color::Green)),
        bars,
    );
    let used = (minutes_shown * columns_per_minute) as u16;
    let axis = Rect {
        x: axis.right().saturating_sub(used),
        width: used.min(axis.width),
        ..axis
    };
    frame.render_widget(Paragraph::new(Span::styled(format!("-{minutes_shown}m"), dim())), axis);
    frame.render_widget(Paragraph::new(Line::styled("now", dim()).right_aligned()), axis);
}

fn draw_top_commands(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let block = panel("Top commands today");
    if data.today.by_command.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("No commands yet today", dim())).block(block),
            area,
        );
        return;
    }
    // Command names matter more than the median: a narrow table drops that column
    // rather than cutting names short.
    let show_median = block.inner(area).width >= 44;
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let rows = data.today.by_command.iter().map(|command| {
        let failed = if command.with_outcome == 0 {
            "-".to_owned()
        } else {
            human::percent(command.failure_rate())
        };
        let failed_style = if command.failures > 0 {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        let mut cells = vec![
            Cell::from(command.command.clone()),
            right(human::count(command.runs)),
            right(failed).style(failed_style),
        ];
        if show_median {
            cells.push(right(
                command.p50_ms().map_or_else(|| "-".to_owned(), human::duration_ms),
            ));
        }
        Row::new(cells)
    });
    let mut header = vec![
        Cell::from("Command"),
        right("Runs".to_owned()),
        right("Failed".to_owned()),
    ];
    let mut widths = vec![Constraint::Fill(1), Constraint::Length(6), Constraint::Length(6)];
    if show_median {
        header.push(right("Median".to_owned()));
        widths.push(Constraint::Length(8));
    }
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(dim()))
            .column_spacing(2)
            .block(block),
        area,
    );
}

fn draw_today(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let today = &data.today;
    // Most important first: a short panel drops rows from the bottom.
    let figures = [
        ("Sessions", human::count(today.sessions)),
        (
            "Avg session",
            today.avg_session_ms.map_or_else(|| "-".to_owned(), human::duration_ms),
        ),
        ("Events", human::count(today.events)),
        ("Commands", human::count(today.commands.runs)),
        (
            "Success",
            today.success_rate().map_or_else(|| "-".to_owned(), human::percent),
        ),
        // `error_occurred` events, as `stats` counts them: a failed command records one,
        // and so can a failure outside any command.
        ("Errors", human::count(today.errors)),
        ("Tasks done", human::count(today.tasks_completed)),
        ("Workspaces", human::count(today.workspaces_created)),
    ];
    let rows = figures.into_iter().map(|(label, value)| {
        Row::new([
            Cell::from(Span::styled(label, dim())),
            Cell::from(Line::from(Span::styled(value, bold())).right_aligned()),
        ])
    });
    frame.render_widget(
        Table::new(rows, [Constraint::Length(12), Constraint::Fill(1)]).block(panel("Today")),
        area,
    );
}

fn draw_recent_errors(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let block = panel("Recent errors");
    if data.recent_errors.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("No failed commands", dim())).block(block),
            area,
        );
        return;
    }
    let rows = data.recent_errors.iter().map(|error| {
        Row::new([
            Cell::from(error.when.clone()),
            Cell::from(error.command.clone()),
            Cell::from(Span::styled(error.category.clone(), Style::new().fg(Color::Red))),
        ])
    });
    let header = Row::new(["Time", "Command", "Category"]).style(dim());
    let widths = [Constraint::Length(12), Constraint::Fill(3), Constraint::Fill(2)];
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(2).block(block),
        area,
    );
}

/// A few lines of text for terminals too small for the panels, wrapped to the width.
fn draw_compact(frame: &mut Frame, area: Rect, data: &DashboardData) {
    let today = &data.today;
    let mut lines = vec![
        Line::from(format!(
            "Today: {} events, {} commands, {} sessions",
            human::count(today.events),
            human::count(today.commands.runs),
            human::count(today.sessions)
        )),
        Line::from(format!(
            "Events: {} this minute, {} last hour",
            human::count(data.this_minute()),
            human::count(data.last_hour())
        )),
    ];
    if let Some(command) = today.by_command.first() {
        lines.push(Line::from(format!(
            "Top: {} ({})",
            command.command,
            human::count(command.runs)
        )));
    }
    if let Some(error) = data.recent_errors.first() {
        lines.push(Line::from(vec![
            Span::raw(format!("Last error: {} {} ", error.when, error.command)),
            Span::styled(error.category.clone(), Style::new().fg(Color::Red)),
        ]));
    }
    let inset = Rect {
        x: area.x.saturating_add(1).min(area.right()),
        width: area.width.saturating_sub(1),
        ..area
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inset);
}

#[cfg(test)]
mod tests {
    use super::*;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyEvent, KeyEventState};
    use tally_core::{Event as TelemetryEvent, EventContext, KeyedHasher, Level, Source};
    use tally_store::{DropCounts, OpenOptions};

    const NOW: &str = "2026-11-22T15:30:20Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn minutes_ago(minutes: i64) -> Timestamp {
        now().checked_sub(SignedDuration::from_mins(minutes)).unwrap()
    }

    const SESSION_A: &str = "0193a0b1-0000-7000-8000-00000000000a";
    const SESSION_B: &str = "0193a0b1-0000-7000-8000-00000000000b";

    fn finish(session: &str, builder: tally_core::EventBuilder) -> TelemetryEvent {
        let hasher = KeyedHasher::new(&[1; 32]);
        let context = EventContext {
            app: "nexus",
            app_version: "1.4.2",
            source: Source::Cli,
            session_id: session,
            install_id: "0193a0b1-0000-7000-8000-000000000002",
            hasher: &hasher,
            level: Level::Basic,
        };
        builder.finish(&context).unwrap().unwrap()
    }

    /// What the SDK records for a command run `minutes` before [`NOW`] in `session`: a
    /// failure (when `error` names a category) also records `error_occurred`.
    fn command(
        session: &str,
        name: &'static str,
        minutes: i64,
        duration_ms: u64,
        error: Option<&'static str>,
    ) -> Vec<TelemetryEvent> {
        let executed = TelemetryEvent::builder("command", "command_executed")
            .command(name)
            .duration_ms(duration_ms)
            .success(error.is_none())
            .ts(minutes_ago(minutes));
        match error {
            None => vec![finish(session, executed)],
            Some(category) => vec![
                finish(session, executed.error_category(category)),
                finish(
                    session,
                    TelemetryEvent::builder("error", "error_occurred")
                        .command(name)
                        .error_category(category)
                        .ts(minutes_ago(minutes)),
                ),
            ],
        }
    }

    /// Two sessions this afternoon: `task done` six times (one failed, each followed by
    /// `task_completed`), `task list` three times and one failed `workspace create`.
    /// Twelve events, ten of them commands.
    fn sample_events() -> Vec<TelemetryEvent> {
        let mut events = Vec::new();
        for i in 0..5 {
            events.extend(command(SESSION_A, "task done", 50 - i * 5, 120 + i as u64 * 10, None));
        }
        events.extend(command(SESSION_A, "task done", 20, 90, Some("not_found")));
        for i in 0..3 {
            events.extend(command(SESSION_B, "task list", 10 - i * 3, 40, None));
        }
        events.extend(command(SESSION_B, "workspace create", 1, 900, Some("io")));
        events
    }

    fn sample_store(dir: &std::path::Path) -> Store {
        let mut store = Store::open(dir, &OpenOptions::default()).unwrap();
        store.insert_batch(&sample_events(), DropCounts::default()).unwrap();
        store
    }

    fn render(data: &DashboardData, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, data)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    /// The screen's cells as a person reads them: one entry per run of text, whatever
    /// the borders and padding around it.
    fn columns(screen: &str) -> Vec<Vec<String>> {
        screen
            .lines()
            .map(|line| {
                line.split(['│', '┌', '┐', '└', '┘', '─'])
                    .flat_map(|panel| panel.split("  "))
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    /// The cells of the first row that has `first` among its cells.
    fn row_with(screen: &str, first: &str) -> Vec<String> {
        columns(screen)
            .into_iter()
            .find(|row| row.iter().any(|cell| cell == first))
            .unwrap_or_else(|| panic!("no row with {first:?} in\n{screen}"))
    }

    /// The cell right after `label` in its row.
    fn value_after(screen: &str, label: &str) -> String {
        let row = row_with(screen, label);
        let at = row.iter().position(|cell| cell == label).unwrap();
        row.get(at + 1).cloned().unwrap_or_default()
    }

    #[test]
    fn shows_commands_errors_and_sessions_at_80x24() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store(dir.path());
        let data = load(&store, "Nexus", now(), &TimeZone::UTC).unwrap();
        let screen = render(&data, 80, 24);

        assert!(screen.starts_with(" Nexus telemetry"), "{screen}");
        assert!(
            screen.lines().next().unwrap().ends_with("updated 15:30:20 "),
            "{screen}"
        );
        let task_done = row_with(&screen, "task done");
        assert_eq!(task_done[..4], ["task done", "6", "16.7%", "125 ms"], "{screen}");
        assert_eq!(
            row_with(&screen, "task list")[..4],
            ["task list", "3", "0%", "40 ms"],
            "{screen}"
        );
        assert_eq!(
            row_with(&screen, "workspace create")[..3],
            ["workspace create", "1", "100%"],
            "{screen}"
        );

        assert_eq!(
            row_with(&screen, "15:29:20"),
            ["15:29:20", "workspace create", "io"],
            "{screen}"
        );
        assert_eq!(
            row_with(&screen, "15:10:20"),
            ["15:10:20", "task done", "not_found"],
            "{screen}"
        );

        assert_eq!(value_after(&screen, "Sessions"), "2", "{screen}");
        assert_eq!(value_after(&screen, "Avg session"), "19m 30s", "{screen}");
        assert_eq!(value_after(&screen, "Events"), "12", "{screen}");
        assert_eq!(value_after(&screen, "Commands"), "10", "{screen}");
        assert_eq!(value_after(&screen, "Success"), "80%", "{screen}");
        assert_eq!(value_after(&screen, "Errors"), "2", "{screen}");
        row_with(&screen, "0 this minute");
        row_with(&screen, "12 last hour");
        row_with(&screen, "2 peak/min");
        assert!(screen.lines().last().unwrap().starts_with(" q quit"), "{screen}");
    }

    #[test]
    fn counts_minutes_and_local_times_in_the_users_time_zone() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store(dir.path());
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let data = load(&store, "Nexus", now(), &tz).unwrap();
        assert_eq!(data.per_minute.len(), MINUTES);
        assert_eq!(data.last_hour(), 12);
        assert_eq!(data.this_minute(), 0);
        assert_eq!(
            data.per_minute[MINUTES - 2],
            2,
            "one minute ago: workspace create failed"
        );
        assert_eq!(
            data.per_minute[MINUTES - 51],
            1,
            "fifty minutes ago: the first task done"
        );
        // 15:29:20 UTC is 20:59:20 in India.
        assert_eq!(data.recent_errors[0].when, "20:59:20");
        assert_eq!(data.recent_errors[0].category, "io");
    }

    #[test]
    fn reload_shows_what_another_connection_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store(dir.path());
        let before = load(&store, "Nexus", now(), &TimeZone::UTC).unwrap();
        let version = store.data_version().unwrap();

        let mut writer = Store::open(dir.path(), &OpenOptions::default()).unwrap();
        let more: Vec<_> = (0..4)
            .flat_map(|_| command(SESSION_B, "task done", 0, 80, Some("conflict")))
            .collect();
        writer.insert_batch(&more, DropCounts::default()).unwrap();

        assert_ne!(store.data_version().unwrap(), version, "the dashboard would not notice");
        let after = load(&store, "Nexus", now(), &TimeZone::UTC).unwrap();
        assert_eq!(after.this_minute(), before.this_minute() + 8);
        assert_eq!(after.today.by_command[0].runs, 10);
        assert_eq!(after.recent_errors[0].category, "conflict");
        let screen = render(&after, 80, 24);
        assert_eq!(row_with(&screen, "task done")[1], "10", "{screen}");
        assert!(screen.contains("conflict"), "{screen}");
    }

    #[test]
    fn an_empty_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &OpenOptions::default()).unwrap();
        let data = load(&store, "Nexus", now(), &TimeZone::UTC).unwrap();
        let screen = render(&data, 80, 24);
        assert!(screen.contains("No commands yet today"), "{screen}");
        assert!(screen.contains("No failed commands"), "{screen}");
    }

    #[test]
    fn tiny_and_huge_terminals_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store(dir.path());
        let data = load(&store, "Nexus", now(), &TimeZone::UTC).unwrap();
        for (width, height) in [(20, 5), (1, 1), (59, 15), (60, 16), (79, 23), (200, 60)] {
            let screen = render(&data, width, height);
            if height >= 3 {
                assert!(screen.contains("q quit") || width < 8, "{width}x{height}\n{screen}");
            }
        }
        let small = render(&data, 40, 8);
        assert!(small.contains("Today: 12 events, 10 commands, 2"), "{small}");
        assert!(small.contains("Last error: 15:29:20 workspace"), "{small}");
        let huge = render(&data, 200, 60);
        assert!(huge.contains("-60m"), "{huge}");
        assert!(huge.contains("task list"), "{huge}");
    }

    #[test]
    fn a_long_store_path_keeps_its_end() {
        assert_eq!(
            shorten_start("/home/alice/.local/share/nexus/telemetry.db", 14),
            "…/telemetry.db"
        );
        assert_eq!(shorten_start("short", 16), "short");
        assert_eq!(shorten_start("short", 0), "");
    }

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    /// The foreground colours used on a screen drawn with or without colour.
    fn colours_used(data: &DashboardData, colour: bool) -> std::collections::BTreeSet<String> {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|frame| draw_styled(frame, data, colour)).unwrap();
        let buffer = terminal.backend().buffer();
        buffer
            .content
            .iter()
            .flat_map(|cell| [cell.fg, cell.bg])
            .map(|c| format!("{c:?}"))
            .collect()
    }

    #[test]
    fn no_color_removes_every_colour_but_keeps_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = sample_store(dir.path());
        let data = load(&store, "nexus", now(), &TimeZone::UTC).unwrap();
        let coloured = colours_used(&data, true);
        assert!(coloured.contains("Red") && coloured.contains("Cyan"), "{coloured:?}");
        assert_eq!(colours_used(&data, false), ["Reset".to_owned()].into());

        assert!(colour_wanted(None));
        assert!(colour_wanted(Some(std::ffi::OsStr::new(""))));
        assert!(!colour_wanted(Some(std::ffi::OsStr::new("1"))));
    }

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        assert!(should_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(should_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(should_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));

        assert!(!should_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!should_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        assert!(!should_quit(&key(KeyCode::Enter, KeyModifiers::NONE)));
        assert!(!should_quit(&Event::Resize(80, 24)));
        let release = Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        });
        assert!(!should_quit(&release));
    }
}
