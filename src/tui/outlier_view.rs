//! State of the Outliers tab: the rows of the latest outlier report of each split, the filters and
//! sort order, the marks a person sets (reviewed / keep / exclude, saved in the run directory), and
//! the preview of the selected image in whatever graphics the terminal supports.

use super::lens::Lens;
use crate::eval::evidence::FeatureEvidence;
use crate::eval::outlier_report::{read_rows, OutlierRow, ScoreKind};
use crate::eval::outlier_row::compare;
use crate::files::ShowPath;
use ratatui::layout::Size;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::Resize;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Cells the preview takes on a terminal of 80 columns or fewer.
pub const PREVIEW: Size = Size { width: 24, height: 12 };
/// The widest preview: beyond it, a 32 px image only gets blurrier.
const PREVIEW_MAX_WIDTH: u16 = 64;

/// Cells the preview takes on a `cols` x `rows` terminal (the layout reserves exactly this):
/// half of the side panel's 45 % of the width, within 24..=64 columns, and half as many rows as
/// columns (a cell is about twice as tall as wide, so a square image stays square), as long as
/// the map below keeps a dozen rows.
pub fn preview_size(cols: u16, rows: u16) -> Size {
    let width = (u32::from(cols) * 45 / 200).clamp(PREVIEW.width.into(), PREVIEW_MAX_WIDTH.into()) as u16;
    let height = (width / 2).min(rows.saturating_sub(24)).max(PREVIEW.height);
    Size { width: height * 2, height }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Reviewed,
    Keep,
    Exclude,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Reviewed => "seen",
            Self::Keep => "keep",
            Self::Exclude => "EXCL",
        }
    }
}

pub const MARKS_FILE: &str = "outlier-marks.json";
pub const EXCLUDE_FILE: &str = "exclude.txt";

pub struct OutlierView {
    pub rows: Vec<OutlierRow>,
    /// Root the rows' paths are relative to.
    pub data_root: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub score: ScoreKind,
    pub class: Option<String>,
    pub split: Option<String>,
    /// Only the rows `auto` flags as this kind (`mislabel`, `stranger`).
    pub kind: Option<String>,
    /// Row in the filtered, sorted list.
    pub selected: usize,
    pub marks: BTreeMap<String, Mark>,
    pub picker: Picker,
    /// The selected image (or the lens's picture of it), encoded for the terminal.
    pub preview: Option<Preview>,
    /// The cells it is encoded for (`preview_size` of the terminal).
    pub preview_cells: Size,
    /// How good the features of the latest report are (its `feature_evidence`); `None` for a CSV
    /// alone or a report written before reports carried it: then no row is called a likely label
    /// error, whatever its `suggested` column says.
    pub evidence: Option<FeatureEvidence>,
    /// `a`: the network's attention or PCA colours over the selected image.
    pub lens: Lens,
    /// `n` and `/`: the neighbour list and the query being typed.
    pub finder: Finder,
}

/// The neighbour view's state.
#[derive(Debug, Default)]
pub struct Finder {
    /// `n`: the images most like a query, browsed in place of the report's rows.
    pub search: Option<Search>,
    /// `/`: the query file being typed.
    pub prompt: Option<String>,
}

/// The neighbour view: which query, and which hit is selected.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub query: PathBuf,
    pub selected: usize,
}

/// Neighbours listed by `n` and `/`.
pub const NEIGHBOURS: usize = 20;

/// What the preview cell holds: the row's image, or one of the lens's pictures of it.
pub struct Preview {
    pub path: String,
    /// The lens view drawn ("attention, head 1"); `None` for the image itself.
    pub view: Option<String>,
    pub protocol: Protocol,
}

impl Default for OutlierView {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            data_root: None,
            run_dir: None,
            score: ScoreKind::Auto,
            class: None,
            split: None,
            kind: None,
            selected: 0,
            marks: BTreeMap::new(),
            picker: Picker::halfblocks(),
            preview: None,
            preview_cells: PREVIEW,
            evidence: None,
            lens: Lens::default(),
            finder: Finder::default(),
        }
    }
}

/// Kitty, sixel or iTerm2 when the terminal answers for one; half-blocks otherwise (tmux, SSH to a
/// plain terminal, no terminal at all). The terminal is only asked when its environment says it
/// may draw images (or `DINO_IMAGES=query`): a terminal that never answers leaves the query's
/// reader waiting on stdin, where it would swallow the first keys. `DINO_IMAGES=halfblocks`
/// never asks. Call before the TUI takes raw mode: the query toggles raw mode itself.
pub fn terminal_picker() -> Picker {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !interactive || !should_query(&var) {
        return Picker::halfblocks();
    }
    Picker::from_query_stdio().unwrap_or_else(|e| {
        tracing::info!("terminal graphics query failed ({e}); images as half-blocks");
        Picker::halfblocks()
    })
}

/// Whether the environment names a terminal that draws images (kitty, WezTerm, iTerm2, Ghostty,
/// foot, Konsole), or the person asked for the query.
fn should_query(var: &dyn Fn(&str) -> String) -> bool {
    match var("DINO_IMAGES").as_str() {
        "query" => return true,
        "halfblocks" => return false,
        _ => {}
    }
    let term = var("TERM");
    let program = var("TERM_PROGRAM");
    !var("KITTY_WINDOW_ID").is_empty()
        || !var("WEZTERM_EXECUTABLE").is_empty()
        || !var("KONSOLE_VERSION").is_empty()
        || term.contains("kitty")
        || term.starts_with("foot")
        || ["iTerm.app", "WezTerm", "ghostty", "kitty"].contains(&program.as_str())
}

pub fn protocol_name(p: &Picker) -> &'static str {
    match p.protocol_type() {
        ProtocolType::Halfblocks => "half-blocks",
        ProtocolType::Sixel => "sixel",
        ProtocolType::Kitty => "kitty",
        ProtocolType::Iterm2 => "iTerm2",
    }
}

impl OutlierView {
    /// Loads a report's CSV, replacing the rows of its split.
    pub fn load(&mut self, csv: &Path, data_root: Option<PathBuf>, run_dir: Option<PathBuf>) -> Result<(), String> {
        let rows = read_rows(csv).map_err(|e| e.to_string())?;
        // A CSV alone carries no evidence: `load_report` sets it after loading.
        self.evidence = None;
        let split = rows.first().map(|r| r.split.clone());
        self.rows.retain(|r| Some(&r.split) != split.as_ref());
        self.rows.extend(rows);
        if !self.available().contains(&self.score) {
            self.score = self.available().first().copied().unwrap_or(ScoreKind::Isolation);
        }
        if data_root.is_some() {
            self.data_root = data_root;
        }
        if self.run_dir.is_none() {
            if let Some(run) = run_dir {
                self.marks = load_marks(&run);
                self.run_dir = Some(run);
            }
        }
        self.selected = 0;
        self.refresh_preview();
        Ok(())
    }

    /// Loads a report's CSV with the evidence its record carries (`feature_evidence`).
    pub fn load_report(
        &mut self,
        csv: &Path,
        evidence: Option<FeatureEvidence>,
        data_root: Option<PathBuf>,
        run_dir: Option<PathBuf>,
    ) -> Result<(), String> {
        self.load(csv, data_root, run_dir)?;
        self.evidence = evidence;
        self.selected = 0;
        self.refresh_preview();
        Ok(())
    }

    /// Whether the report's evidence lets rows be called likely label errors.
    pub fn claims(&self) -> bool {
        self.evidence.as_ref().is_some_and(FeatureEvidence::supports_claims)
    }

    /// The class the row is a likely label error for, when the report claims it.
    pub fn likely_error<'a>(&self, row: &'a OutlierRow) -> Option<&'a str> {
        (self.claims() && !row.suggested.is_empty()).then_some(row.suggested.as_str())
    }

    /// What the kind filter shows: the mislabel side keeps only the likely label errors where the
    /// evidence supports the claim, and is named for what it is (auto's mislabel side, ranked
    /// without a claim) where it does not.
    pub fn kind_name(&self) -> &str {
        match self.kind.as_deref() {
            None => "all",
            Some("mislabel") if self.claims() => "likely label errors",
            Some("mislabel") => "mislabel side (no label-error claim)",
            Some(k) => k,
        }
    }

    fn passes_kind(&self, r: &OutlierRow) -> bool {
        match self.kind.as_deref() {
            None => true,
            Some("mislabel") if self.claims() => self.likely_error(r).is_some(),
            Some(k) => r.kind == k,
        }
    }

    /// Rows passing the filters, sorted by the chosen score, highest first.
    pub fn visible(&self) -> Vec<&OutlierRow> {
        let mut v: Vec<&OutlierRow> = self
            .rows
            .iter()
            .filter(|r| self.class.as_ref().is_none_or(|c| &r.label == c))
            .filter(|r| self.split.as_ref().is_none_or(|s| &r.split == s))
            .filter(|r| self.passes_kind(r))
            .collect();
        // The order of `dino outliers` and its CSV, tie-breakers included.
        v.sort_by(|a, b| compare(self.score, a, b));
        v
    }

    /// The score kinds the loaded rows carry (older reports: disagreement and isolation only).
    pub fn available(&self) -> Vec<ScoreKind> {
        let has = |f: fn(&OutlierRow) -> bool| self.rows.iter().any(f);
        ScoreKind::ALL
            .into_iter()
            .filter(|k| match k {
                ScoreKind::Auto => has(|r| r.auto.is_some()),
                ScoreKind::Mislabel => has(|r| r.mislabel.is_some()),
                ScoreKind::Stranger => has(|r| r.stranger.is_some()),
                ScoreKind::Disagreement => has(|r| r.disagreement.is_some()),
                ScoreKind::Isolation => true,
            })
            .collect()
    }

    pub fn selected_row(&self) -> Option<&OutlierRow> {
        self.visible().get(self.selected).copied()
    }

    pub fn classes(&self) -> Vec<String> {
        let mut c: Vec<String> = self.rows.iter().map(|r| r.label.clone()).filter(|l| !l.is_empty()).collect();
        c.sort();
        c.dedup();
        c
    }

    fn splits(&self) -> Vec<String> {
        let mut s: Vec<String> = self.rows.iter().map(|r| r.split.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    pub fn move_selection(&mut self, delta: isize) {
        if let Some(s) = &mut self.finder.search {
            let n = match &self.lens.neighbours {
                Some(found) if found.query == s.query => found.hits.len(),
                _ => 0,
            };
            s.selected = (s.selected as isize + delta).clamp(0, (n as isize - 1).max(0)) as usize;
            self.refresh_preview();
            return;
        }
        let n = self.visible().len();
        if n == 0 {
            return;
        }
        self.selected = (self.selected as isize + delta).clamp(0, n as isize - 1) as usize;
        self.refresh_preview();
    }

    pub fn select(&mut self, index: usize) {
        self.selected = index.min(self.visible().len().saturating_sub(1));
        self.refresh_preview();
    }

    /// All classes, then each class in turn.
    pub fn cycle_class(&mut self, forward: bool) {
        self.class = cycle(&self.classes(), self.class.take(), forward);
        self.select(0);
    }

    pub fn cycle_split(&mut self) {
        self.split = cycle(&self.splits(), self.split.take(), true);
        self.select(0);
    }

    /// The next score kind the rows carry, round.
    pub fn toggle_score(&mut self) {
        let kinds = self.available();
        let at = kinds.iter().position(|k| *k == self.score);
        self.score = at.and_then(|i| kinds.get(i + 1)).or(kinds.first()).copied().unwrap_or(ScoreKind::Isolation);
        self.select(0);
    }

    /// All rows, then the likely mislabels, then the likely strangers (as `auto` calls them).
    pub fn cycle_kind(&mut self) {
        let mut kinds: Vec<String> = self.rows.iter().map(|r| r.kind.clone()).filter(|k| !k.is_empty()).collect();
        kinds.sort();
        kinds.dedup();
        self.kind = cycle(&kinds, self.kind.take(), true);
        self.select(0);
    }

    /// Sets (or, when it is already set, clears) a mark on the selected image and saves the marks.
    pub fn toggle_mark(&mut self, mark: Mark) -> Result<Option<String>, String> {
        let Some(path) = self.selected_row().map(|r| r.path.clone()) else { return Ok(None) };
        if self.marks.get(&path) == Some(&mark) {
            self.marks.remove(&path);
        } else {
            self.marks.insert(path.clone(), mark);
        }
        if let Some(run) = &self.run_dir {
            save_marks(run, &self.marks)?;
        }
        Ok(Some(path))
    }

    /// Writes the excluded paths (relative to the data root) one per line; returns the file and count.
    pub fn export_exclusions(&self) -> Result<(PathBuf, usize), String> {
        let run = self.run_dir.as_ref().ok_or("no run directory to write the exclusion list into")?;
        let excluded: Vec<&str> = self.marks.iter().filter(|(_, m)| **m == Mark::Exclude).map(|(p, _)| p.as_str()).collect();
        let mut text = String::from("# images marked `exclude` in the Outliers tab; train with --exclude FILE\n");
        for p in &excluded {
            text.push_str(p);
            text.push('\n');
        }
        let path = run.join(EXCLUDE_FILE);
        crate::run::dir::write_atomic(&path, text.as_bytes()).map_err(|e| format!("{e:#}"))?;
        Ok((path, excluded.len()))
    }

    pub fn absolute(&self, rel: &str) -> PathBuf {
        match &self.data_root {
            Some(root) => root.join(rel),
            None => PathBuf::from(rel),
        }
    }

    /// The terminal is now `cols` x `rows`: a preview of another size is encoded again.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let cells = preview_size(cols, rows);
        if cells != self.preview_cells {
            self.preview_cells = cells;
            self.preview = None;
            self.refresh_preview();
        }
    }

    /// The image the preview shows: the selected neighbour in the neighbour view, else the
    /// selected row; (the preview's key, its absolute path).
    pub fn selected_image(&self) -> Option<(String, PathBuf)> {
        match &self.finder.search {
            Some(s) => self.hits().get(s.selected).map(|h| (h.path.display().to_string(), h.path.clone())),
            None => self.selected_row().map(|r| (r.path.clone(), self.absolute(&r.path))),
        }
    }

    /// Decodes the selected image, or takes the lens's picture of it, and encodes it for the
    /// terminal (once per selection, view and size). With the lens on, the picture is asked
    /// for here and drawn when the worker answers (`poll_lens`).
    pub fn refresh_preview(&mut self) {
        let Some((key, absolute)) = self.selected_image() else {
            self.preview = None;
            return;
        };
        if self.lens.on {
            if let Some(run) = self.run_dir.clone() {
                self.lens.ask(&run, &absolute);
            }
        }
        let shown = self.lens.shown(&absolute).map(|(label, img, _, _)| (label.to_string(), img.clone()));
        let view = shown.as_ref().map(|(label, _)| label.clone());
        if self.preview.as_ref().is_some_and(|p| p.path == key && p.view == view) {
            return;
        }
        let picture = match shown {
            Some((_, img)) => Some(img),
            // The loader's decoding: a regular file only (a FIFO would hang the TUI), bombs refused.
            None => crate::data::load_rgb(&absolute).ok(),
        };
        self.preview = picture
            .map(image::DynamicImage::ImageRgb8)
            .and_then(|img| self.picker.new_protocol(img, self.preview_cells, Resize::Scale(None)).ok())
            .map(|protocol| Preview { path: key, view, protocol });
    }

    /// The neighbours found for the shown query (none while they are computed).
    pub fn hits(&self) -> &[super::lens::Hit] {
        match (&self.finder.search, &self.lens.neighbours) {
            (Some(s), Some(n)) if n.query == s.query => &n.hits,
            _ => &[],
        }
    }

    /// `n`: the images most like the selected one (a neighbour's own neighbours in the
    /// neighbour view), across the split the selected row belongs to.
    pub fn search_selected(&mut self) -> Option<String> {
        let (_, query) = self.selected_image()?;
        self.search_for(query)
    }

    /// `/` then enter: the images most like any image file. A path that is not absolute is read
    /// relative to the data set's root, then to the working directory.
    pub fn search_file(&mut self, typed: &str) -> Option<String> {
        let typed = PathBuf::from(typed.trim());
        let query = match &self.data_root {
            Some(root) if !typed.is_absolute() && root.join(&typed).exists() => root.join(&typed),
            _ => typed,
        };
        if !query.is_file() {
            return Some(format!("{} is not an image file", query.shown()));
        }
        self.search_for(query)
    }

    fn search_for(&mut self, query: PathBuf) -> Option<String> {
        let Some(run) = self.run_dir.clone() else {
            return Some("no run to search with: open the report from a run".into());
        };
        let Some(root) = self.data_root.clone() else { return Some("the report names no data set".into()) };
        let name = self.split.clone().or_else(|| self.selected_row().map(|r| r.split.clone())).unwrap_or_else(|| "train".into());
        self.lens.ask_neighbours(&run, &query, super::lens::SplitRef { root, name }, NEIGHBOURS);
        self.finder.search = Some(Search { query, selected: 0 });
        self.refresh_preview();
        None
    }

    /// Esc: back to the report's rows.
    pub fn close_search(&mut self) {
        self.finder.search = None;
        self.refresh_preview();
    }

    /// `a`: the lens on or off over the selected image.
    pub fn toggle_lens(&mut self) -> Option<String> {
        self.lens.on = !self.lens.on;
        if self.lens.on && self.run_dir.is_none() {
            self.lens.on = false;
            return Some("no run to look through: open the report from a run".into());
        }
        self.refresh_preview();
        None
    }

    /// The worker's answers; true when something shown changed.
    pub fn poll_lens(&mut self) -> bool {
        if !self.lens.poll() {
            return false;
        }
        self.refresh_preview();
        true
    }

    /// `←`/`→` with the lens on: the previous or next picture.
    pub fn step_lens(&mut self, forward: bool) {
        self.lens.step(forward);
        self.refresh_preview();
    }
}

fn cycle(options: &[String], current: Option<String>, forward: bool) -> Option<String> {
    let pos = current.as_ref().and_then(|c| options.iter().position(|o| o == c));
    let n = options.len();
    match (pos, forward) {
        (None, true) => options.first().cloned(),
        (None, false) => options.last().cloned(),
        (Some(i), true) if i + 1 < n => Some(options[i + 1].clone()),
        (Some(i), false) if i > 0 => Some(options[i - 1].clone()),
        _ => None,
    }
}

fn load_marks(run: &Path) -> BTreeMap<String, Mark> {
    let path = run.join(crate::eval::record::EVALS_DIR).join(MARKS_FILE);
    crate::files::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn save_marks(run: &Path, marks: &BTreeMap<String, Mark>) -> Result<(), String> {
    let dir = run.join(crate::eval::record::EVALS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.shown()))?;
    let bytes = serde_json::to_vec_pretty(marks).map_err(|e| e.to_string())?;
    crate::run::dir::write_atomic(&dir.join(MARKS_FILE), &bytes).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_grows_with_the_terminal_within_its_bounds() {
        let cells = |c, r| {
            let s = preview_size(c, r);
            (s.width, s.height)
        };
        assert_eq!(cells(80, 24), (24, 12));
        assert_eq!(cells(60, 20), (24, 12), "never below the small-terminal size");
        assert_eq!(cells(160, 48), (36, 18));
        assert_eq!(cells(220, 60), (48, 24));
        assert_eq!(cells(220, 30), (24, 12), "a short terminal keeps the map's rows");
        assert_eq!(cells(u16::MAX, u16::MAX), (64, 32), "no overflow, capped");
        assert_eq!(cells(0, 0), (24, 12));
    }

    #[test]
    fn without_a_terminal_the_preview_uses_half_blocks() {
        // Tests run with stdin/stdout captured or redirected: no graphics protocol to ask for.
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            return;
        }
        let p = terminal_picker();
        assert_eq!(p.protocol_type(), ProtocolType::Halfblocks);
        assert_eq!(protocol_name(&p), "half-blocks");
    }

    #[test]
    fn only_image_capable_terminals_are_asked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()).unwrap_or_default()
        };
        assert!(!should_query(&env(&[("TERM", "xterm-256color")])), "a plain terminal is not asked");
        assert!(!should_query(&env(&[("TERM", "screen-256color"), ("TMUX", "/tmp/tmux")])), "tmux is not asked");
        assert!(should_query(&env(&[("TERM", "xterm-kitty")])));
        assert!(should_query(&env(&[("TERM_PROGRAM", "WezTerm")])));
        assert!(should_query(&env(&[("TERM", "xterm"), ("DINO_IMAGES", "query")])));
        assert!(!should_query(&env(&[("TERM", "xterm-kitty"), ("DINO_IMAGES", "halfblocks")])));
    }

    #[test]
    fn class_filter_cycles_through_all_then_each_class() {
        let opts = vec!["a".to_string(), "b".to_string()];
        assert_eq!(cycle(&opts, None, true).as_deref(), Some("a"));
        assert_eq!(cycle(&opts, Some("a".into()), true).as_deref(), Some("b"));
        assert_eq!(cycle(&opts, Some("b".into()), true), None);
        assert_eq!(cycle(&opts, None, false).as_deref(), Some("b"));
    }
}
