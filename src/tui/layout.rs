//! Screen geometry shared by drawing and mouse hit-testing, so a click lands on what was drawn.

use super::app::Tab;
use ratatui::layout::Rect;

pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;
/// Room kept at the right of the tab bar for the run-state badge.
pub const BADGE_WIDTH: u16 = 11;

pub fn too_small(area: Rect) -> bool {
    area.width < MIN_WIDTH || area.height < MIN_HEIGHT
}

pub struct Screen {
    pub tabs: Rect,
    pub body: Rect,
    pub footer: Rect,
}

pub fn screen(area: Rect) -> Screen {
    let h = area.height;
    Screen {
        tabs: Rect { height: h.min(1), ..area },
        body: Rect { y: area.y + 1, height: h.saturating_sub(2), ..area },
        footer: Rect { y: area.y + h.saturating_sub(1), height: h.min(1), ..area },
    }
}

/// Each tab's label and its columns in the tab bar: full titles when they fit, short ones, else
/// just the numbers.
pub fn tab_labels(width: u16) -> Vec<(Tab, String, u16, u16)> {
    let room = width.saturating_sub(BADGE_WIDTH) as usize;
    let styles: [fn(Tab, usize) -> String; 3] =
        [|t, i| format!(" {} {} ", i + 1, t.title()), |t, i| format!(" {} {} ", i + 1, t.short_title()), |_, i| format!(" {} ", i + 1)];
    let mut chosen = Vec::new();
    for style in styles {
        chosen = Tab::ALL.iter().enumerate().map(|(i, t)| (*t, style(*t, i))).collect::<Vec<_>>();
        let total: usize = chosen.iter().map(|(_, s)| s.chars().count()).sum();
        if total <= room {
            break;
        }
    }
    let mut x = 0u16;
    chosen
        .into_iter()
        .map(|(t, s)| {
            let w = s.chars().count() as u16;
            let out = (t, s, x, w);
            x = x.saturating_add(w);
            out
        })
        .collect()
}

/// The tab under a click in the top row of a terminal of `size` (width, height).
pub fn tab_at(size: (u16, u16), column: u16, row: u16) -> Option<Tab> {
    if row != 0 || too_small(Rect::new(0, 0, size.0, size.1)) {
        return None;
    }
    tab_labels(size.0).into_iter().find(|(_, _, x, w)| column >= *x && column < x + w).map(|(t, ..)| t)
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_hit_the_drawn_titles() {
        assert_eq!(tab_at((160, 48), 1, 0), Some(Tab::Dashboard));
        let labels = tab_labels(160);
        let (_, _, x, _) = labels[5];
        assert_eq!(tab_at((160, 48), x + 1, 0), Some(Tab::Log));
        assert_eq!(tab_at((160, 48), 1, 3), None);
        // Narrow terminals fall back to shorter labels that still fit.
        let narrow = tab_labels(40);
        let end = narrow.last().map(|(_, _, x, w)| x + w).unwrap_or(0);
        assert!(end <= 40 - BADGE_WIDTH, "{end}");
    }
}
