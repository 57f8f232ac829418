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

/// What the schema says of itself, as GraphiQL's Docs pane and codegen read it: every
/// type, field, argument, input field and enum value lacking a description. Built-in
/// scalars and the introspection types (`__…`) are the specification's, not ours.
#[tokio::test]
async fn every_part_of_the_schema_has_a_description() {
    const BUILT_IN: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
    let schema = rapport::graphql::build_schema();
    let response = schema
        .execute(
            "{ __schema { types { name description \
               fields(includeDeprecated: true) { name description args { name description } } \
               inputFields { name description } \
               enumValues(includeDeprecated: true) { name description } } } }",
        )
        .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response
        .data
        .into_json()
        .expect("introspection answers JSON");
    let described = |value: &serde_json::Value| {
        value["description"]
            .as_str()
            .is_some_and(|text| !text.trim().is_empty())
    };
    let list = |value: &serde_json::Value| value.as_array().cloned().unwrap_or_default();
    let mut missing = Vec::new();
    for ty in list(&data["__schema"]["types"]) {
        let name = ty["name"].as_str().unwrap_or_default();
        if name.starts_with("__") || BUILT_IN.contains(&name) {
            continue;
        }
        if !described(&ty) {
            missing.push(format!("type {name}"));
        }
        for field in list(&ty["fields"]) {
            let field_name = field["name"].as_str().unwrap_or_default();
            if !described(&field) {
                missing.push(format!("field {name}.{field_name}"));
            }
            for arg in list(&field["args"]) {
                if !described(&arg) {
                    missing.push(format!(
                        "argument {name}.{field_name}({})",
                        arg["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        for field in list(&ty["inputFields"]) {
            if !described(&field) {
                missing.push(format!(
                    "input field {name}.{}",
                    field["name"].as_str().unwrap_or_default()
                ));
            }
        }
        for value in list(&ty["enumValues"]) {
            if !described(&value) {
                missing.push(format!(
                    "enum value {name}.{}",
                    value["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} parts of the schema have no description (write a `///` doc comment, or \
         `#[graphql(desc = \"…\")]` on an argument):\n{}",
        missing.len(),
        missing.join("\n")
    );
}
