//! The chart's test suite (one test binary, a module per topic).

mod checkov;
mod lint;
mod matrix;
mod parameters;
mod references;
mod schema;
mod selectors;
mod util;
mod validation;
