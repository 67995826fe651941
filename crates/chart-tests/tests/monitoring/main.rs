//! Monitoring: the exporter's Citus queries against real PostgreSQL with Citus, the default alerts under
//! `promtool test rules`, and how the monitoring values render. A test whose tool (Citus, the exporter,
//! promtool) is missing is reported ignored with the reason; it never passes without running.

mod alerts;
mod exporter;
mod render;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The outcome of a test that may lack a tool: `Ok(Err(reason))` = ignored for that reason.
pub type Outcome = Result<Result<(), String>, Failed>;

fn trial(name: &str, test: fn() -> Outcome) -> Trial {
    Trial::ignorable_test(name, move || match test()? {
        Ok(()) => Ok(Completion::Completed),
        Err(reason) => Ok(Completion::ignored_with(reason)),
    })
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![
        trial("exporter::custom_queries_answer_on_real_citus", exporter::custom_queries_answer_on_real_citus),
        trial("alerts::promtool_test_rules", alerts::promtool_test_rules),
    ];
    trials.extend(render::trials());
    libtest_mimic::run(&args, trials).exit();
}
