//! The chart under test and the values every run gives it: known passwords, so that a scenario can log in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

pub const POSTGRES_PASSWORD: &str = "pg-super:secret\\1";
pub const APP_PASSWORD: &str = "app secret 'two'";
pub const COORDINATOR: &str = "my-citus-coordinator-0";
pub const COORDINATOR_SERVICE: &str = "my-citus-coordinator";
/// The pods of release my-citus with the default three workers.
pub const NODES: [&str; 4] = [COORDINATOR, "my-citus-worker-0", "my-citus-worker-1", "my-citus-worker-2"];
/// How long pods may take to become Ready.
pub const READY: Duration = Duration::from_secs(180);
/// How long a Service may take to follow its pods' readiness on the node agent.
pub const SERVING: Duration = Duration::from_secs(10);

/// The chart directory of this repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/citus")
}

/// Chart values: known passwords plus `extra`, merged (objects recursively).
pub fn values(extra: Value) -> Value {
    let mut base = json!({"auth": {"postgresPassword": POSTGRES_PASSWORD, "password": APP_PASSWORD}});
    merge(&mut base, extra);
    base
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}
