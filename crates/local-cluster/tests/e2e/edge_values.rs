//! Values at the edge of what the chart's validation accepts (tests/data/edge-values.yaml of chart-tests)
//! still form a working Citus cluster on the control plane: role and database names with spaces, dots and capitals, a password
//! with characters the scripts escape, and max_connections at the floor the chart computes for 4 nodes (one less is refused).

use anyhow::ensure;
use serde_json::json;

use crate::util::{self, Env, Login, COORDINATOR, COORDINATOR_SERVICE};
use testbed::{Space, NODES};

crate::scenarios!(Node: edge_names_and_the_connection_floor_form_a_working_cluster);

const USER: &str = "App User.v2";
const DATABASE: &str = "Citus-DB_1.v2";
const PASSWORD: &str = "p:a\\ss w'o\"rd$#€ ";

fn edge_names_and_the_connection_floor_form_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "edge-values", Some("restricted"))?;
    space.install(json!({
        "auth": {"username": USER, "database": DATABASE, "password": PASSWORD},
        // 4 nodes: 3 reserved slots, one connection from each node's maintenance daemon, one for the jobs,
        // and the 11 connections per worker a query over 32 shards on 3 workers opens.
        "postgresql": {
            "maxConnections": 19,
            "extraConfiguration": "log_line_prefix = '%m # [%p] '  # a '#' inside quotes\n",
        },
    }))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    let socket = Login { host: "/var/run/postgresql", user: "postgres", password: None, database: DATABASE };
    let workers =
        util::psql(&space, COORDINATOR, &socket, "SELECT count(*) FROM pg_dist_node WHERE isactive AND groupid <> 0")?;
    ensure!(workers == "3", "{workers} active workers registered");
    let login = Login { host: COORDINATOR_SERVICE, user: USER, password: Some(PASSWORD), database: DATABASE };
    let sql = "CREATE TABLE edge (id bigint PRIMARY KEY);\n\
               SELECT create_distributed_table('edge', 'id') \\g /dev/null\n\
               INSERT INTO edge SELECT generate_series(1, 1000);\n\
               SELECT current_user, current_database(), count(*) FROM edge;";
    let got = util::psql(&space, COORDINATOR, &login, sql)?;
    ensure!(got == format!("{USER}|{DATABASE}|1000"), "as the application user: {got}");
    space.helm.test("my-citus", Some(300))?;
    Ok(())
}
