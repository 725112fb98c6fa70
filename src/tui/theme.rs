//! Colour themes: TOML files mapping named slots to colours. Shipped themes are embedded so the
//! binary works from any directory; user themes live in `<config dir>/themes/NAME.toml` and may set
//! only some slots (the rest come from the default). A bad file is reported with its path and the
//! offending key, and the default theme is used instead.

use crate::files::ShowPath;
use ratatui::style::{Color, Modifier, Style};
use std::path::{Path, PathBuf};

pub const DEFAULT_THEME: &str = "dark";

/// The shipped themes, by name.
pub const SHIPPED: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThemeError {
    #[error("theme file {file}: {message}")]
    Parse { file: String, message: String },
    #[error("theme file {file}: key `{key}`: {message}")]
    Key { file: String, key: String, message: String },
    #[error("theme `{name}` not found (shipped: dark, light, high-contrast; user themes: {dir})")]
    NotFound { name: String, dir: String },
}

macro_rules! slots {
    ($($name:ident),* $(,)?) => {
        /// Every colour a theme sets. One field per slot keeps drawing code free of lookups.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct Palette { $(pub $name: Color,)* }

        impl Palette {
            const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];

            fn slot_mut(&mut self, key: &str) -> Option<&mut Color> {
                match key { $(stringify!($name) => Some(&mut self.$name),)* _ => None }
            }
        }
    };
}

slots!(
    background,
    foreground,
    muted,
    border,
    title,
    accent,
    selection_bg,
    selection_fg,
    ok,
    warning,
    danger,
    loss,
    loss_ema,
    lr,
    wd,
    teacher_temp,
    momentum,
    preview,
    marker,
    gauge,
);

/// A resolved theme: colours plus whether colour is off (`NO_COLOR`).
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub palette: Palette,
    /// With colour off every style is the terminal default, and emphasis uses bold and reverse.
    pub no_color: bool,
}

impl Theme {
    /// The default shipped theme. Its text is part of the binary and tested, so it always parses;
    /// the fallback palette is only there to avoid an `unwrap`.
    pub fn default_theme() -> Self {
        parse_theme(DEFAULT_THEME, SHIPPED[0].1, None).unwrap_or_else(|_| Theme {
            name: DEFAULT_THEME.into(),
            palette: fallback_palette(),
            no_color: false,
        })
    }

    pub fn with_no_color(mut self, no_color: bool) -> Self {
        self.no_color = no_color;
        self
    }

    fn fg(&self, c: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(c)
        }
    }

    pub fn base(&self) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(self.palette.foreground).bg(self.palette.background)
        }
    }
    pub fn text(&self) -> Style {
        self.fg(self.palette.foreground)
    }
    pub fn muted(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::DIM)
        } else {
            self.fg(self.palette.muted)
        }
    }
    pub fn border(&self) -> Style {
        self.fg(self.palette.border)
    }
    pub fn title(&self) -> Style {
        self.fg(self.palette.title).add_modifier(Modifier::BOLD)
    }
    pub fn accent(&self) -> Style {
        self.fg(self.palette.accent).add_modifier(Modifier::BOLD)
    }
    pub fn selected(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default().fg(self.palette.selection_fg).bg(self.palette.selection_bg).add_modifier(Modifier::BOLD)
        }
    }
    pub fn ok(&self) -> Style {
        self.fg(self.palette.ok)
    }
    /// A health verdict's colour, wherever one is shown (the dashboard, the run picker).
    pub fn verdict(&self, v: crate::protocol::health::Verdict) -> Style {
        use crate::protocol::health::Verdict;
        match v {
            Verdict::Learning => self.ok(),
            Verdict::NotLearningYet => self.warning(),
            Verdict::Collapsed | Verdict::Diverging => self.danger(),
            Verdict::Unknown => self.muted(),
        }
    }
    pub fn warning(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            self.fg(self.palette.warning).add_modifier(Modifier::BOLD)
        }
    }
    pub fn danger(&self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            self.fg(self.palette.danger).add_modifier(Modifier::BOLD)
        }
    }
    /// A data series' colour (loss, lr, ...).
    pub fn series(&self, c: Color) -> Style {
        self.fg(c)
    }
    pub fn gauge(&self) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(self.palette.gauge)
        }
    }
}

fn fallback_palette() -> Palette {
    Palette {
        background: Color::Reset,
        foreground: Color::Reset,
        muted: Color::DarkGray,
        border: Color::Gray,
        title: Color::Cyan,
        accent: Color::Cyan,
        selection_bg: Color::Blue,
        selection_fg: Color::White,
        ok: Color::Green,
        warning: Color::Yellow,
        danger: Color::Red,
        loss: Color::Cyan,
        loss_ema: Color::Yellow,
        lr: Color::Green,
        wd: Color::Magenta,
        teacher_temp: Color::LightRed,
        momentum: Color::LightBlue,
        preview: Color::Yellow,
        marker: Color::White,
        gauge: Color::Green,
    }
}

/// A colour name as theme files write it: an ANSI name (`light_blue`, `dark_gray`, `reset`) so
/// 16-colour terminals show it, a 256-colour palette index (`"240"`: the grey ramp 232-255 has
/// mid greys that read on white, where ANSI 7 and the washed-out bright colours do not), or
/// `#rrggbb` for terminals with true colour.
pub fn parse_color(s: &str) -> Result<Color, String> {
    let t = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    let named = match t.as_str() {
        "reset" | "default" => Color::Reset,
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "dark_gray" | "dark_grey" | "darkgray" => Color::DarkGray,
        "light_red" => Color::LightRed,
        "light_green" => Color::LightGreen,
        "light_yellow" => Color::LightYellow,
        "light_blue" => Color::LightBlue,
        "light_magenta" => Color::LightMagenta,
        "light_cyan" => Color::LightCyan,
        "white" => Color::White,
        n if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => match n.parse::<u8>() {
            Ok(i) => Color::Indexed(i),
            Err(_) => return Err(format!("`{s}` is not a colour: a palette index is 0 to 255")),
        },
        hex if hex.starts_with('#') => {
            let h = &hex[1..];
            if h.len() != 6 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("`{s}` is not a colour: use `#rrggbb` with six hex digits"));
            }
            let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| e.to_string());
            return Ok(Color::Rgb(byte(0)?, byte(2)?, byte(4)?));
        }
        _ => {
            return Err(format!(
                "`{s}` is not a colour: use an ANSI name (black, red, green, yellow, blue, magenta, cyan, gray, \
                 dark_gray, light_red, ..., white, reset), a palette index 0-255 or `#rrggbb`"
            ))
        }
    };
    Ok(named)
}

/// Parses a theme file's text. Slots it leaves out come from `base` (the default theme) or, for
/// the default theme itself, must all be present.
pub fn parse_theme(file: &str, text: &str, base: Option<&Palette>) -> Result<Theme, ThemeError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ThemeError::Parse { file: file.into(), message: e.to_string() })?;
    let mut palette = base.copied().unwrap_or_else(fallback_palette);
    let mut seen = Vec::new();
    let mut name = None;
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("name", toml::Value::String(s)) => name = Some(s.clone()),
            ("colors", toml::Value::Table(colors)) => {
                for (k, v) in colors {
                    let full = format!("colors.{k}");
                    let slot = palette.slot_mut(k).ok_or_else(|| ThemeError::Key {
                        file: file.into(),
                        key: full.clone(),
                        message: format!("unknown key (known: {})", Palette::KEYS.join(", ")),
                    })?;
                    let s = v.as_str().ok_or_else(|| ThemeError::Key {
                        file: file.into(),
                        key: full.clone(),
                        message: "expected a string such as \"cyan\" or \"#88c0d0\"".into(),
                    })?;
                    *slot = parse_color(s).map_err(|message| ThemeError::Key { file: file.into(), key: full.clone(), message })?;
                    seen.push(k.clone());
                }
            }
            (k, _) => {
                return Err(ThemeError::Key {
                    file: file.into(),
                    key: k.into(),
                    message: "unknown key (a theme has `name` and a `[colors]` table)".into(),
                })
            }
        }
    }
    if base.is_none() {
        if let Some(missing) = Palette::KEYS.iter().find(|k| !seen.iter().any(|s| s == *k)) {
            return Err(ThemeError::Key {
                file: file.into(),
                key: format!("colors.{missing}"),
                message: "missing (a shipped theme sets every slot)".into(),
            });
        }
    }
    let stem = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or(file).to_string();
    Ok(Theme { name: name.unwrap_or(stem), palette, no_color: false })
}

/// Where a theme name resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum ThemeSource {
    Shipped(&'static str, &'static str),
    File(PathBuf),
}

/// `name` as a path to a `.toml` file, else `<user_dir>/NAME.toml`, else a shipped theme.
pub fn resolve(name: &str, user_dir: Option<&Path>) -> Result<ThemeSource, ThemeError> {
    let as_path = Path::new(name);
    if name.ends_with(".toml") || name.contains('/') {
        return Ok(ThemeSource::File(as_path.to_path_buf()));
    }
    if let Some(dir) = user_dir {
        let p = dir.join(format!("{name}.toml"));
        if p.is_file() {
            return Ok(ThemeSource::File(p));
        }
    }
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(n, t)| ThemeSource::Shipped(n, t)).ok_or_else(|| ThemeError::NotFound {
        name: name.into(),
        dir: user_dir.map(|d| d.shown().to_string()).unwrap_or_else(|| "none".into()),
    })
}

/// Loads a resolved theme; user files inherit unset slots from the default theme.
pub fn load(source: &ThemeSource) -> Result<Theme, ThemeError> {
    match source {
        ThemeSource::Shipped(name, text) => parse_theme(&format!("{name}.toml (shipped)"), text, None),
        ThemeSource::File(path) => {
            let file = path.shown().to_string();
            let text = crate::files::read_to_string(path).map_err(|e| ThemeError::Parse { file: file.clone(), message: e.to_string() })?;
            parse_theme(&file, &text, Some(&Theme::default_theme().palette))
        }
    }
}

/// Resolves and loads, falling back to the default theme; the error (if any) is returned for the
/// Log tab and the log file.
pub fn load_or_default(name: &str, user_dir: Option<&Path>) -> (Theme, Option<ThemeError>) {
    match resolve(name, user_dir).and_then(|s| load(&s)) {
        Ok(t) => (t, None),
        Err(e) => {
            tracing::warn!("{e}; using the default theme");
            (Theme::default_theme(), Some(e))
        }
    }
}

/// `NO_COLOR` set to anything non-empty turns colour off (https://no-color.org).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_theme_parses_completely() {
        for (name, text) in SHIPPED {
            let t = parse_theme(name, text, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, name);
        }
    }

    #[test]
    fn shipped_themes_use_only_ansi_colours() {
        for (name, text) in SHIPPED {
            let t = parse_theme(name, text, None).expect("parses");
            let p = t.palette;
            for c in [p.foreground, p.accent, p.loss, p.lr, p.warning, p.danger, p.selection_bg] {
                assert!(!matches!(c, Color::Rgb(..) | Color::Indexed(_)), "{name}: {c:?}");
            }
        }
    }

    #[test]
    fn bad_colour_names_file_and_key() {
        let err = parse_theme("/tmp/mine.toml", "[colors]\naccent = \"#12345\"\n", Some(&fallback_palette())).expect_err("bad colour");
        let msg = err.to_string();
        assert!(msg.contains("/tmp/mine.toml") && msg.contains("colors.accent"), "{msg}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse_theme("mine.toml", "[colors]\naccnet = \"red\"\n", Some(&fallback_palette())).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("mine.toml") && msg.contains("colors.accnet") && msg.contains("unknown"), "{msg}");
        let err = parse_theme("mine.toml", "colour = 1\n", Some(&fallback_palette())).expect_err("unknown");
        assert!(err.to_string().contains("`colour`"));
    }

    #[test]
    fn bad_user_theme_falls_back_to_default() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("broken.toml"), "[colors]\nloss = \"ultraviolet\"\n").expect("write");
        let (theme, err) = load_or_default("broken", Some(dir.path()));
        assert_eq!(theme, Theme::default_theme());
        let msg = err.expect("an error").to_string();
        assert!(msg.contains("broken.toml") && msg.contains("colors.loss"), "{msg}");
    }

    #[test]
    fn partial_user_theme_inherits_and_hex_works() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("mine.toml"), "name = \"mine\"\n[colors]\nloss = \"#ff8800\"\n").expect("write");
        let (theme, err) = load_or_default("mine", Some(dir.path()));
        assert!(err.is_none());
        assert_eq!(theme.palette.loss, Color::Rgb(0xff, 0x88, 0));
        assert_eq!(theme.palette.lr, Theme::default_theme().palette.lr);
    }

    #[test]
    fn unknown_theme_name_falls_back() {
        let (theme, err) = load_or_default("nope", None);
        assert_eq!(theme.name, "dark");
        assert!(matches!(err, Some(ThemeError::NotFound { .. })));
    }

    #[test]
    fn palette_indices_parse_and_the_light_theme_avoids_pale_greys() {
        assert_eq!(parse_color("240"), Ok(Color::Indexed(240)));
        assert!(parse_color("256").is_err());
        let (light, err) = load_or_default("light", None);
        assert!(err.is_none(), "{err:?}");
        let p = light.palette;
        for (slot, c) in [("muted", p.muted), ("border", p.border), ("foreground", p.foreground)] {
            assert!(!matches!(c, Color::Gray | Color::White | Color::DarkGray), "light theme {slot} is {c:?}: pale on white");
        }
    }
}
