//! `domains pick`: an interactive list of the tenant's domains. The logic is
//! a plain state machine ([`Picker`]) fed with [`PickKey`]s, so it is tested
//! without a terminal; [`run_terminal`] connects it to one.
//!
//! Keys: type to filter (Backspace deletes), ↑/↓ move, Space toggles the
//! domain under the cursor, Ctrl-A selects every domain shown, Ctrl-X
//! unselects every domain shown, Enter saves, Esc or Ctrl-C cancels.

use std::io;

/// One domain in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickItem {
    pub name: String,
    /// A note shown beside the name (`default`, `federated: no PAP`, …).
    pub note: String,
    pub selected: bool,
}

/// What a key press turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickKey {
    Char(char),
    Backspace,
    Up,
    Down,
    Toggle,
    SelectShown,
    UnselectShown,
    Save,
    Cancel,
}

/// The end of a pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickOutcome {
    /// The chosen names, in list order.
    Save(Vec<String>),
    Cancel,
}

/// The list, the filter and the cursor.
#[derive(Debug, Clone)]
pub struct Picker {
    items: Vec<PickItem>,
    filter: String,
    /// Index into `shown()`.
    cursor: usize,
}

impl Picker {
    pub fn new(items: Vec<PickItem>) -> Picker {
        Picker {
            items,
            filter: String::new(),
            cursor: 0,
        }
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn items(&self) -> &[PickItem] {
        &self.items
    }

    /// Indices of the items the filter lets through (case-insensitive substring).
    pub fn shown(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        (0..self.items.len())
            .filter(|&i| f.is_empty() || self.items[i].name.to_lowercase().contains(&f))
            .collect()
    }

    /// The selected names, in list order.
    pub fn selection(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.selected)
            .map(|i| i.name.clone())
            .collect()
    }

    /// Applies one key; `Some` when the pick is over.
    pub fn key(&mut self, key: PickKey) -> Option<PickOutcome> {
        let shown = self.shown();
        match key {
            PickKey::Char(c) if !c.is_control() => {
                self.filter.push(c);
                self.cursor = 0;
            }
            PickKey::Char(_) => {}
            PickKey::Backspace => {
                self.filter.pop();
                self.cursor = 0;
            }
            PickKey::Up => self.cursor = self.cursor.saturating_sub(1),
            PickKey::Down => {
                if self.cursor + 1 < shown.len() {
                    self.cursor += 1;
                }
            }
            PickKey::Toggle => {
                if let Some(&i) = shown.get(self.cursor) {
                    self.items[i].selected = !self.items[i].selected;
                }
            }
            PickKey::SelectShown | PickKey::UnselectShown => {
                let on = key == PickKey::SelectShown;
                for i in shown {
                    self.items[i].selected = on;
                }
            }
            PickKey::Save => return Some(PickOutcome::Save(self.selection())),
            PickKey::Cancel => return Some(PickOutcome::Cancel),
        }
        None
    }

    /// The screen as lines: a header, the filter, then the shown items.
    pub fn render(&self) -> Vec<String> {
        let shown = self.shown();
        let mut lines = vec![
            "Pick the domains whose users may sign in. Type to filter, ↑/↓ move, Space toggles,".to_string(),
            "Ctrl-A selects all shown, Ctrl-X unselects all shown, Enter saves, Esc cancels.".to_string(),
            format!(
                "filter: {}   ({} of {} shown, {} selected)",
                self.filter,
                shown.len(),
                self.items.len(),
                self.items.iter().filter(|i| i.selected).count()
            ),
        ];
        if shown.is_empty() {
            lines.push("  (no domain matches the filter)".into());
        }
        for (row, &i) in shown.iter().enumerate() {
            let item = &self.items[i];
            let pointer = if row == self.cursor { '>' } else { ' ' };
            let mark = if item.selected { 'x' } else { ' ' };
            let note = if item.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", item.note)
            };
            lines.push(format!("{pointer} [{mark}] {}{note}", item.name));
        }
        lines
    }
}

/// A terminal key as a [`PickKey`].
fn map_key(key: console::Key) -> Option<PickKey> {
    use console::Key;
    Some(match key {
        Key::Enter => PickKey::Save,
        Key::Escape | Key::CtrlC => PickKey::Cancel,
        Key::Backspace => PickKey::Backspace,
        Key::ArrowUp => PickKey::Up,
        Key::ArrowDown => PickKey::Down,
        Key::Char(' ') => PickKey::Toggle,
        // console reads Ctrl-A as Home.
        Key::Home | Key::Char('\u{1}') => PickKey::SelectShown,
        Key::Char('\u{18}') => PickKey::UnselectShown,
        Key::Char('\u{3}') => PickKey::Cancel,
        Key::Char('\r') | Key::Char('\n') => PickKey::Save,
        Key::Char('\u{7f}') | Key::Char('\u{8}') => PickKey::Backspace,
        Key::Char(c) => PickKey::Char(c),
        _ => return None,
    })
}

/// Runs the picker on the terminal (stderr for drawing, the tty for keys).
/// Fails when there is no terminal.
pub fn run_terminal(picker: &mut Picker) -> io::Result<PickOutcome> {
    let term = console::Term::stderr();
    if !term.is_term() {
        return Err(io::Error::other(
            "`domains pick` needs a terminal; use `domains select` / `domains unselect` in scripts",
        ));
    }
    term.hide_cursor()?;
    let mut drawn = 0;
    let outcome = loop {
        if drawn > 0 {
            term.clear_last_lines(drawn)?;
        }
        let lines = picker.render();
        for line in &lines {
            term.write_line(line)?;
        }
        drawn = lines.len();
        let key = match term.read_key() {
            Ok(k) => k,
            Err(e) => {
                let _ = term.show_cursor();
                return Err(e);
            }
        };
        if let Some(k) = map_key(key)
            && let Some(outcome) = picker.key(k)
        {
            break outcome;
        }
    };
    term.show_cursor()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker() -> Picker {
        Picker::new(
            [
                "contoso.com",
                "contoso.onmicrosoft.com",
                "fabrikam.com",
                "sales.contoso.com",
            ]
            .iter()
            .enumerate()
            .map(|(i, n)| PickItem {
                name: n.to_string(),
                note: String::new(),
                selected: i == 2,
            })
            .collect(),
        )
    }

    fn type_text(p: &mut Picker, s: &str) {
        for c in s.chars() {
            assert_eq!(p.key(PickKey::Char(c)), None);
        }
    }

    #[test]
    fn filter_narrows_and_backspace_widens() {
        let mut p = picker();
        type_text(&mut p, "CONTOSO");
        assert_eq!(p.shown(), vec![0, 1, 3]);
        type_text(&mut p, ".com");
        assert_eq!(p.shown(), vec![0, 3]);
        for _ in 0..4 {
            p.key(PickKey::Backspace);
        }
        assert_eq!(p.filter(), "CONTOSO");
        assert_eq!(p.shown(), vec![0, 1, 3]);
        type_text(&mut p, "zzz");
        assert!(p.shown().is_empty());
        // Toggling with nothing shown does nothing.
        p.key(PickKey::Toggle);
        assert_eq!(p.selection(), vec!["fabrikam.com"]);
        assert!(p.render().iter().any(|l| l.contains("no domain matches")));
    }

    #[test]
    fn toggle_follows_the_cursor_within_the_filter() {
        let mut p = picker();
        type_text(&mut p, "contoso");
        p.key(PickKey::Down);
        p.key(PickKey::Down);
        p.key(PickKey::Down); // stays on the last shown item
        assert_eq!(p.cursor(), 2);
        p.key(PickKey::Toggle);
        p.key(PickKey::Up);
        p.key(PickKey::Up);
        p.key(PickKey::Up);
        assert_eq!(p.cursor(), 0);
        p.key(PickKey::Toggle);
        assert_eq!(
            p.key(PickKey::Save),
            Some(PickOutcome::Save(vec![
                "contoso.com".into(),
                "fabrikam.com".into(),
                "sales.contoso.com".into()
            ]))
        );
    }

    #[test]
    fn select_and_unselect_all_shown_spare_the_hidden() {
        let mut p = picker();
        type_text(&mut p, "contoso");
        p.key(PickKey::SelectShown);
        assert_eq!(p.selection().len(), 4, "three shown plus fabrikam already selected");
        p.key(PickKey::UnselectShown);
        assert_eq!(p.selection(), vec!["fabrikam.com"], "the hidden one keeps its mark");
        for _ in 0..7 {
            p.key(PickKey::Backspace);
        }
        p.key(PickKey::UnselectShown);
        assert!(p.selection().is_empty());
        assert_eq!(p.key(PickKey::Save), Some(PickOutcome::Save(vec![])));
    }

    #[test]
    fn cancel_and_control_characters() {
        let mut p = picker();
        p.key(PickKey::Char('\u{7}'));
        assert_eq!(p.filter(), "");
        assert_eq!(p.key(PickKey::Cancel), Some(PickOutcome::Cancel));
    }

    #[test]
    fn terminal_keys_map_to_picker_keys() {
        use console::Key;
        assert_eq!(map_key(Key::Char(' ')), Some(PickKey::Toggle));
        assert_eq!(map_key(Key::Char('\u{1}')), Some(PickKey::SelectShown));
        assert_eq!(map_key(Key::Home), Some(PickKey::SelectShown));
        assert_eq!(map_key(Key::Char('\u{18}')), Some(PickKey::UnselectShown));
        assert_eq!(map_key(Key::Enter), Some(PickKey::Save));
        assert_eq!(map_key(Key::Escape), Some(PickKey::Cancel));
        assert_eq!(map_key(Key::Char('a')), Some(PickKey::Char('a')));
        assert_eq!(map_key(Key::Tab), None);
    }

    #[test]
    fn render_marks_cursor_and_selection() {
        let mut p = picker();
        p.key(PickKey::Down);
        p.key(PickKey::Down);
        let lines = p.render();
        assert!(lines.contains(&"> [x] fabrikam.com".to_string()), "{lines:?}");
        assert!(lines.contains(&"  [ ] contoso.com".to_string()), "{lines:?}");
    }
}
