//! Totals over cargo test's per-binary `test result:` lines, so that `cargo xtask test` ends with how many
//! tests ran, failed and were ignored (the e2e scenarios a machine cannot run are ignored, with reasons).

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
    pub binaries: u64,
}

impl Totals {
    /// Adds a `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line; other lines are left alone.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(count)) = (words.next(), words.next()) else { continue };
            let Ok(count) = count.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ran ({} passed, {} failed), {} ignored, over {} test binaries",
            self.passed + self.failed,
            self.passed,
            self.failed,
            self.ignored,
            self.binaries
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines_of_every_binary() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 10 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_line("test result: FAILED. 5 passed; 2 failed; 13 ignored; 0 measured; 0 filtered out; finished in 9s");
        t.add_line("test something ... ok");
        assert_eq!(t, Totals { passed: 15, failed: 2, ignored: 13, binaries: 2 });
        assert_eq!(t.to_string(), "17 ran (15 passed, 2 failed), 13 ignored, over 2 test binaries");
    }
}
