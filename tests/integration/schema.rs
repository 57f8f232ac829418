//! The committed `schema.graphql` is what the code serves: regenerate it with
//! `cargo run -- schema > schema.graphql` when this fails.

#[test]
fn the_committed_schema_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    let served = rapport::graphql::sdl();
    if committed != served {
        let first = committed
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(served.lines().count()));
        panic!(
            "schema.graphql differs from the served schema from line {} on; run `cargo run -- schema > schema.graphql` and commit it.\ncommitted: {:?}\nserved:    {:?}",
            first + 1,
            committed.lines().nth(first),
            served.lines().nth(first)
        );
    }
}
