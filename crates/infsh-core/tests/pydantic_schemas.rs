//! infsh-core against real pydantic output (regenerate the data with
//! `tests/data/gen_schemas.py`): the functions_schema round trip, and the
//! validator's verdicts compared with pydantic's on the same inputs.

use std::collections::BTreeSet;

use infsh_core::{FunctionInfo, FunctionSet, InputValidator};
use serde_json::Value;

const FUNCTIONS_SCHEMA: &str = include_str!("data/functions_schema.json");
const CASES: &str = include_str!("data/validation_cases.json");

fn functions() -> Vec<FunctionInfo> {
    let schema: Value = serde_json::from_str(FUNCTIONS_SCHEMA).unwrap();
    // Worker order is by name too, but feed them reversed to prove sorting.
    schema
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(name, entry)| FunctionInfo {
            name: name.clone(),
            streaming: false,
            is_async: true,
            accepts_metadata: false,
            batched: false,
            entry: entry.clone(),
        })
        .collect()
}

#[test]
fn functions_schema_round_trips_byte_for_byte() {
    let set = FunctionSet::new(functions(), None);
    let rebuilt = serde_json::to_string_pretty(&set.functions_schema()).unwrap() + "\n";
    assert_eq!(rebuilt, FUNCTIONS_SCHEMA);
    assert_eq!(
        set.default_name(),
        None,
        "three functions, no run, no default_function"
    );
    assert_eq!(set.resolve(Some("upscale")).unwrap().name, "upscale");
}

/// `regions[0].y` / `regions.0.y` → `regions`.
fn top_level(path: &str) -> String {
    path.split(['.', '[']).next().unwrap().to_string()
}

#[test]
fn verdicts_match_pydantic() {
    let set = FunctionSet::new(functions(), None);
    let cases: Vec<Value> = serde_json::from_str(CASES).unwrap();
    assert!(cases.len() > 40);
    let mut failures = Vec::new();
    for case in &cases {
        let function = case["function"].as_str().unwrap();
        let input = &case["input"];
        let lax = case["lax"].as_bool().unwrap();
        let pydantic_valid = case["pydantic_valid"].as_bool().unwrap();
        let schema = set.resolve(Some(function)).unwrap().input_schema().unwrap();
        let validator = InputValidator::compile(schema).unwrap();
        let result = validator.validate(input);

        let expect_valid = pydantic_valid && !lax;
        if result.is_ok() != expect_valid {
            failures.push(format!(
                "{function} {input}: pydantic valid={pydantic_valid} lax={lax}, infsh: {result:?}"
            ));
            continue;
        }
        if let Err(errors) = result {
            for e in &errors {
                assert!(!e.message.is_empty());
                assert!(
                    !e.message.contains("anyOf") && !e.message.contains("oneOf"),
                    "{e}"
                );
            }
            if !lax {
                let ours: BTreeSet<String> = errors.iter().map(|e| top_level(&e.path)).collect();
                let theirs: BTreeSet<String> = case["pydantic_error_locs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| top_level(l.as_str().unwrap()))
                    .collect();
                if ours != theirs {
                    failures.push(format!(
                        "{function} {input}: fields {ours:?}, pydantic {theirs:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
