//! Entries of the Log tab: trainer events, warnings, alarms, edits and the UI's own problems.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn label(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub level: LogLevel,
    /// The run's latest iteration when the entry was made; iterations rather than wall-clock
    /// times keep the view reproducible and say where in training it happened.
    pub iter: Option<usize>,
    pub text: String,
}
