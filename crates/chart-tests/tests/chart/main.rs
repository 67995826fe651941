//! The chart's test suite (one test binary, a module per topic).

#![forbid(unsafe_code)]

mod autoscaling;
mod checkov;
mod immutable;
mod job_pods;
mod lint;
mod matrix;
mod parameters;
mod references;
mod schema;
mod selectors;
mod shellcheck;
mod util;
mod validation;
mod whitespace;
