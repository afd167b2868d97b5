//! The path parser and the diff application: examples from the server's semantics, and a
//! property test against a reference that works on RFC 6901 pointers instead of paths.

use proptest::prelude::*;
use serde_json::{json, Map, Value as Json};

use super::*;

fn applied(doc: Json, diffs: &[(Operation, &str, Option<Json>)]) -> Result<Json, String> {
    let mut doc = doc;
    for (operation, path, value) in diffs {
        apply(&mut doc, *operation, &parse_path(path)?, value.clone())?;
    }
    Ok(doc)
}

#[test]
fn paths_parse_as_the_server_writes_them() {
    use Leg::*;
    assert_eq!(parse_path("$").unwrap(), []);
    assert_eq!(parse_path("$.age").unwrap(), [Member("age".into())]);
    assert_eq!(
        parse_path(r#"$."a b"[3].c[last][last-2]"#).unwrap(),
        [
            Member("a b".into()),
            Index(3),
            Member("c".into()),
            FromLast(0),
            FromLast(2)
        ]
    );
    assert_eq!(
        parse_path(r#"$."q\"u\\o""#).unwrap(),
        [Member("q\"u\\o".into())]
    );
    assert_eq!(parse_path(r#"$."""#).unwrap(), [Member(String::new())]);
    for bad in [
        "",
        "a",
        "$.*",
        "$[*]",
        "$**.a",
        "$[1 to 3]",
        "$.\"open",
        "$[",
        "$.a]",
    ] {
        assert!(parse_path(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn diffs_apply_as_the_server_applies_them() {
    use Operation::*;
    let doc = json!({"a": 1, "bb": [1, 2, 3], "name": "Joe"});
    // The fixture's diff: REPLACE $.age.
    assert_eq!(
        applied(
            json!({"age": 25, "data": "x"}),
            &[(Replace, "$.age", Some(json!(26)))]
        )
        .unwrap(),
        json!({"age": 26, "data": "x"})
    );
    // A new member goes where the server keeps it (shorter keys first, then bytes).
    let inserted = applied(doc.clone(), &[(Insert, "$.ab", Some(json!(true)))]).unwrap();
    assert_eq!(
        inserted.to_string(),
        r#"{"a":1,"ab":true,"bb":[1,2,3],"name":"Joe"}"#
    );
    // Array inserts: at an index, past the end (appended), from the end.
    assert_eq!(
        applied(
            doc.clone(),
            &[
                (Insert, "$.bb[0]", Some(json!(0))),
                (Insert, "$.bb[9]", Some(json!(9))),
                (Insert, "$.bb[last]", Some(json!(8)))
            ]
        )
        .unwrap()["bb"],
        json!([0, 1, 2, 3, 8, 9])
    );
    assert_eq!(
        applied(
            doc.clone(),
            &[(Remove, "$.bb[last-1]", None), (Remove, "$.a", None)]
        )
        .unwrap()
        .to_string(),
        r#"{"bb":[1,3],"name":"Joe"}"#
    );
    // Auto-wrapping: $.a[0] is $.a when a is not an array.
    assert_eq!(
        applied(doc.clone(), &[(Replace, "$.a[0]", Some(json!("one")))]).unwrap()["a"],
        json!("one")
    );
    assert_eq!(
        applied(doc.clone(), &[(Replace, "$", Some(json!([1])))]).unwrap(),
        json!([1])
    );
    // What does not apply is an error, never a guess.
    for diffs in [
        vec![(Replace, "$.missing", Some(json!(1)))],
        vec![(Remove, "$.missing", None)],
        vec![(Remove, "$.bb[3]", None)],
        vec![(Insert, "$.a.b", Some(json!(1)))],
        vec![(Insert, "$.missing.b", Some(json!(1)))],
        vec![(Remove, "$", None)],
        vec![(Replace, "$.a", None)],
        vec![(Replace, "$.a[1]", Some(json!(1)))],
    ] {
        assert!(applied(doc.clone(), &diffs).is_err(), "{diffs:?} applied");
    }
}

/// A place in a document, as the reference addresses it.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Cell(usize),
}

const KEYS: &[&str] = &[
    "a", "b", "id", "k2", "a b", "q\"uote", "é", "", "x.y", "last",
];

/// Objects with their keys in the server's order, as documents read from binary JSON are.
fn sorted(map: Map<String, Json>) -> Json {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
    Json::Object(entries.into_iter().collect())
}

fn document() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i32>().prop_map(Json::from),
        "[a-z ]{0,6}".prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|pairs| {
                sorted(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Every place in `doc`, root first.
fn places(doc: &Json, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match doc {
        Json::Object(map) => {
            for (k, v) in map {
                prefix.push(Step::Key(k.clone()));
                places(v, prefix, out);
                prefix.pop();
            }
        }
        Json::Array(cells) => {
            for (i, v) in cells.iter().enumerate() {
                prefix.push(Step::Cell(i));
                places(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn pointer(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
            Step::Cell(i) => format!("/{i}"),
        })
        .collect()
}

/// The path as the server would write it; cells counted from the end when `from_end` and the
/// cell exists (`len` of its array known from `doc`).
fn rendered(doc: &Json, steps: &[Step], from_end: bool) -> String {
    let mut path = String::from("$");
    let mut at = Some(doc);
    for step in steps {
        match step {
            Step::Key(k) => {
                let plain = !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                if plain {
                    path.push_str(&format!(".{k}"));
                } else {
                    path.push_str(&format!(".{}", serde_json::to_string(k).unwrap()));
                }
                at = at.and_then(|v| v.get(k));
            }
            Step::Cell(i) => {
                let len = at.and_then(Json::as_array).map(Vec::len);
                match len {
                    Some(len) if from_end && *i < len => {
                        path.push_str(&format!("[last-{}]", len - 1 - i));
                    }
                    _ => path.push_str(&format!("[{i}]")),
                }
                at = at.and_then(|v| v.get(*i));
            }
        }
    }
    path
}

/// The reference: RFC 6901 pointers and the plain operations on them.
fn reference(doc: &mut Json, operation: Operation, steps: &[Step], value: Option<Json>) {
    if operation == Operation::Replace {
        *doc.pointer_mut(&pointer(steps)).unwrap() = value.unwrap();
        return;
    }
    let (last, parent) = steps.split_last().unwrap();
    let parent = doc.pointer_mut(&pointer(parent)).unwrap();
    match (operation, last) {
        (Operation::Insert, Step::Key(k)) => {
            let mut map = std::mem::take(parent.as_object_mut().unwrap());
            map.insert(k.clone(), value.unwrap());
            *parent = sorted(map);
        }
        (Operation::Insert, Step::Cell(i)) => {
            let cells = parent.as_array_mut().unwrap();
            let at = (*i).min(cells.len());
            cells.insert(at, value.unwrap());
        }
        (Operation::Remove, Step::Key(k)) => {
            let map = parent.as_object_mut().unwrap();
            let kept: Map<String, Json> = std::mem::take(map)
                .into_iter()
                .filter(|(key, _)| key != k)
                .collect();
            *map = kept;
        }
        (Operation::Remove, Step::Cell(i)) => {
            parent.as_array_mut().unwrap().remove(*i);
        }
        (Operation::Replace, _) => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random REPLACE / INSERT / REMOVE sequences on random documents: the path parser and
    /// `apply` give exactly the reference's document, key order included.
    #[test]
    fn diffs_agree_with_the_reference(
        start in document(),
        ops in prop::collection::vec((0u8..3, any::<u64>(), document(), any::<u64>(), any::<bool>()), 1..12),
    ) {
        let mut expected = start.clone();
        let mut actual = start;
        for (kind, seed, value, key_seed, from_end) in ops {
            let mut all = Vec::new();
            places(&expected, &mut Vec::new(), &mut all);
            let (operation, steps) = match kind {
                0 => (Operation::Replace, all[(seed % all.len() as u64) as usize].clone()),
                1 => {
                    let containers: Vec<_> = all
                        .iter()
                        .filter(|s| expected.pointer(&pointer(s)).is_some_and(|v| v.is_object() || v.is_array()))
                        .collect();
                    let Some(parent) = containers.get((seed % containers.len().max(1) as u64) as usize) else {
                        continue;
                    };
                    let mut steps = (*parent).clone();
                    match expected.pointer(&pointer(&steps)).unwrap() {
                        Json::Object(_) => steps.push(Step::Key(KEYS[(key_seed % KEYS.len() as u64) as usize].to_owned())),
                        Json::Array(cells) => steps.push(Step::Cell((key_seed % (cells.len() as u64 + 2)) as usize)),
                        _ => unreachable!(),
                    }
                    (Operation::Insert, steps)
                }
                _ => {
                    if all.len() < 2 {
                        continue;
                    }
                    (Operation::Remove, all[1 + (seed % (all.len() as u64 - 1)) as usize].clone())
                }
            };
            let path = rendered(&expected, &steps, from_end && operation != Operation::Insert);
            let value = (operation != Operation::Remove).then_some(value);
            reference(&mut expected, operation, &steps, value.clone());
            let legs = parse_path(&path).map_err(TestCaseError::fail)?;
            apply(&mut actual, operation, &legs, value).map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
            prop_assert_eq!(actual.to_string(), expected.to_string(), "after {:?} {}", operation, path);
        }
    }
}
