//! The OpenAPI 3 document of the admin API, written by hand (a generator
//! would cost more build time than this file does). A test checks that it
//! names every route the router serves.

use serde_json::{Value, json};

/// Routes as (method, OpenAPI path), for the test that keeps the document
/// and the router in step.
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/subjects"),
    ("get", "/v1/subjects/{id}"),
    ("delete", "/v1/subjects/{id}"),
    ("get", "/v1/plan"),
    ("get", "/v1/reports/{kind}"),
    ("post", "/v1/demands"),
    ("get", "/v1/ledger/verify"),
    ("get", "/v1/ledger/checkpoints"),
    ("post", "/v1/ledger/checkpoints"),
    ("get", "/v1/evidence"),
    ("get", "/v1/policy"),
    ("post", "/v1/policy"),
    ("get", "/v1/policy/history"),
    ("post", "/v1/migrations"),
    ("get", "/v1/migrations/current"),
    ("post", "/v1/migrations/current/{action}"),
];

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn errors(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        let d = match *c {
            "400" => "Bad input; nothing was changed.",
            "401" => "No bearer token, or not a valid one.",
            "403" => "The token's role may not do this (see `x-roles`).",
            "404" => "Not found (or the subject is not registered).",
            "409" => "Conflicts with the current state.",
            "503" => "Busy or timed out; retry.",
            _ => "Error.",
        };
        m.insert((*c).into(), ok(d, r("Error")));
    }
    Value::Object(m)
}

fn op(summary: &str, tag: &str, secured: bool, responses: Value) -> Value {
    let mut o = json!({"summary": summary, "tags": [tag], "responses": responses});
    if !secured {
        o["security"] = json!([]);
    }
    o
}

fn with(mut responses: Value, extra: Value) -> Value {
    if let (Some(a), Some(b)) = (responses.as_object_mut(), extra.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    responses
}

fn path_param(name: &str, description: &str, values: Option<&[&str]>) -> Value {
    let mut schema = json!({"type": "string"});
    if let Some(v) = values {
        schema["enum"] = json!(v);
    }
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// Each operation's roles from the permission table (`x-roles`, and in
/// its summary), so the document cannot say otherwise than the server
/// does.
fn with_roles(doc: &mut Value) {
    for p in super::auth::PERMISSIONS {
        let op = &mut doc["paths"][p.path][p.method.to_ascii_lowercase()];
        let super::auth::Allow::Roles(roles) = p.allow else {
            continue;
        };
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        op["x-roles"] = json!(names);
        if let Some(summary) = op["summary"].as_str() {
            let summary = summary
                .replace(" (admin or auditor)", "")
                .replace(" (admin)", "");
            op["summary"] = json!(format!("{summary} Roles: {}.", names.join(", ")));
        }
    }
}

/// The whole document.
pub(crate) fn document() -> Value {
    let s = |t: &str| json!({"type": t});
    let arr = |items: Value| json!({"type": "array", "items": items});
    let admin_errors = errors(&["400", "401", "403", "503"]);
    let reader_errors = errors(&["401", "503"]);
    let subject_id = path_param("id", "The subject's id.", None);
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "domicile admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Subjects, plans, migrations, reports, demands and ledger verification. Bearer tokens have a role: admin, operator, auditor or legal; each operation's `x-roles` lists the roles that may call it (docs/s3-access.md). JSON shapes are those of the CLI's `--format json`."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": op("Liveness: the catalog answers.", "service", false,
                json!({"200": ok("Healthy.", obj(json!({"status": s("string")}), &["status"])),
                       "503": ok("The catalog does not answer.", obj(json!({"status": s("string")}), &["status"]))}))},
            "/metrics": {"get": op("Prometheus metrics: requests, bytes and errors per operation and region; migration progress.", "service", false,
                json!({"200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": s("string")}}}}))},
            "/openapi.json": {"get": op("This document.", "service", false,
                json!({"200": ok("OpenAPI 3 document.", s("object"))}))},
            "/v1/subjects": {"post": {
                "summary": "Register a subject (admin).", "tags": ["subjects"],
                "requestBody": body(obj(json!({"subject": s("string"), "home": {"type": "string", "description": "ISO 3166-1 alpha-2 code."}}), &["subject", "home"])),
                "responses": with(admin_errors.clone(), json!({
                    "201": ok("Registered.", obj(json!({"subject": s("string"), "home": s("string")}), &["subject", "home"])),
                    "409": ok("Already registered.", r("Error"))}))
            }},
            "/v1/subjects/{id}": {
                "get": {"summary": "Where a subject's data is and who could reach it (admin); as `subject show --format json`.",
                        "tags": ["subjects"], "parameters": [subject_id.clone()],
                        "responses": with(admin_errors.clone(), json!({"200": ok("The subject.", r("SubjectView")), "404": ok("Not registered.", r("Error"))}))},
                "delete": {"summary": "Erase a subject: purge every copy and shred its keys (admin).",
                           "tags": ["subjects"], "parameters": [subject_id],
                           "responses": with(admin_errors.clone(), json!({"200": ok("Erased.", obj(json!({"placements": s("integer"), "objects": s("integer"), "copies_deleted": s("integer")}), &["placements", "objects", "copies_deleted"])), "404": ok("Not registered.", r("Error"))}))}
            },
            "/v1/plan": {"get": {
                "summary": "The plan of the current config over the catalog (admin); as `plan --format json`.",
                "tags": ["plans"],
                "parameters": [{"name": "limit", "in": "query", "required": false, "description": "Moves to list (default 1000); totals cover all.", "schema": s("integer")}],
                "responses": with(admin_errors.clone(), json!({"200": ok("The plan.", r("Plan"))}))
            }},
            "/v1/reports/{kind}": {"get": {
                "summary": "A report on the present (admin or auditor); as `report KIND --format json`.",
                "tags": ["reports"],
                "parameters": [path_param("kind", "Which report.", Some(&["residency", "exposure", "cost", "violations"]))],
                "responses": with(reader_errors.clone(), json!({
                    "200": ok("The report.", json!({"oneOf": [r("Residency"), r("Exposure"), r("Cost"), r("Violations")]})),
                    "404": ok("Unknown report.", r("Error"))}))
            }},
            "/v1/demands": {"post": {
                "summary": "What an authority could compel for a subject; recorded in the ledger (admin).",
                "tags": ["demands"],
                "requestBody": body(obj(json!({"authority": s("string"), "subject": s("string")}), &["authority", "subject"])),
                "responses": with(admin_errors.clone(), json!({"200": ok("The demand.", r("Demand")), "404": ok("Not registered.", r("Error"))}))
            }},
            "/v1/ledger/verify": {"get": {
                "summary": "Re-compute the ledger's hash chain (admin or auditor).",
                "tags": ["ledger"],
                "responses": with(reader_errors.clone(), json!({"200": ok("The chain check, against every signed checkpoint.", obj(json!({"entries": s("integer"), "head_seq": s("integer"), "head_hash": s("string"), "checkpoints": s("integer"), "ok": s("boolean"), "error": {"type": "string", "nullable": true}}), &["entries", "ok"]))}))
            }},
            "/v1/ledger/checkpoints": {
                "get": {
                    "summary": "Every signed checkpoint of the ledger's head, by seq (docs/evidence.md).",
                    "tags": ["ledger"],
                    "responses": with(reader_errors.clone(), json!({"200": ok("The checkpoints.", obj(json!({"checkpoints": {"type": "array", "items": r("Checkpoint")}}), &["checkpoints"]))}))
                },
                "post": {
                    "summary": "Sign the ledger's head with the ledger signing key and store the checkpoint; a head already signed keeps its checkpoint. Refused if the ledger does not follow from the newest checkpoint.",
                    "tags": ["ledger"],
                    "responses": with(admin_errors.clone(), json!({"200": ok("The checkpoint.", r("Checkpoint"))}))
                }
            },
            "/v1/evidence": {"get": {
                "summary": "The signed evidence bundle, byte for byte as `evidence export` writes it (docs/evidence.md): policy, verify result, residency and exposure, the ledger's entries (all, or one subject's) with the checkpoints that cover them, and the public key.",
                "tags": ["ledger"],
                "parameters": [{"name": "subject", "in": "query", "required": false, "description": "Only this subject's entries.", "schema": s("string")}],
                "responses": with(reader_errors.clone(), json!({"200": ok("The bundle.", obj(json!({"format": s("string"), "manifest": s("string"), "members": {"type": "object", "additionalProperties": s("string")}, "signature": s("string")}), &["format", "manifest", "members", "signature"])), "400": ok("A bad subject id, or a ledger that does not verify.", r("Error")), "404": ok("No ledger entry of the subject.", r("Error"))}))
            }},
            "/v1/policy": {
                "get": {
                    "summary": "The active policy version: every server and worker acts on it (version 1 is the policy of the config file the catalog was first opened with).",
                    "tags": ["policy"],
                    "responses": with(reader_errors.clone(), json!({"200": ok("The active version.", r("PolicyVersion"))}))
                },
                "post": {
                    "summary": "Apply a config file's rules and reach as the next policy version, and start the migration it needs (admin).",
                    "tags": ["policy"],
                    "parameters": [{"name": "migrate", "in": "query", "required": false, "description": "Start the migration job (default true).", "schema": s("boolean")}],
                    "requestBody": {"required": true, "content": {"text/plain": {"schema": {"type": "string", "description": "The config file's text (TOML)."}}}},
                    "responses": with(admin_errors.clone(), json!({
                        "201": ok("Applied as a new version.", r("PolicyApplied")),
                        "200": ok("Already the active version: nothing changed.", r("PolicyApplied"))
                    }))
                }
            },
            "/v1/policy/history": {"get": {
                "summary": "Every applied policy version, oldest first.",
                "tags": ["policy"],
                "responses": with(reader_errors, json!({"200": ok("The versions.", obj(json!({"versions": {"type": "array", "items": r("PolicyVersion")}}), &["versions"]))}))
            }},
            "/v1/migrations": {"post": {
                "summary": "Start a migration of the current plan; it runs in the background (admin).",
                "tags": ["migrations"],
                "requestBody": {"required": false, "content": {"application/json": {"schema": obj(json!({"rate": {"type": "integer", "description": "Bytes per second; 0 = unlimited."}, "workers": s("integer"), "batch": {"type": "integer", "description": "Units per worker turn (1-1024)."}}), &[])}}},
                "responses": with(admin_errors.clone(), json!({"202": ok("Started.", r("MigrationStatus"))}))
            }},
            "/v1/migrations/current": {"get": {
                "summary": "The open (or last) migration job's progress (admin).",
                "tags": ["migrations"],
                "responses": with(admin_errors.clone(), json!({"200": ok("Progress.", r("MigrationStatus")), "404": ok("No job yet.", r("Error"))}))
            }},
            "/v1/migrations/current/{action}": {"post": {
                "summary": "Pause, resume or cancel the open migration job (admin).",
                "tags": ["migrations"],
                "parameters": [path_param("action", "What to do.", Some(&["pause", "resume", "cancel"]))],
                "responses": with(admin_errors, json!({"200": ok("The job after the action.", r("MigrationStatus")), "404": ok("No open job.", r("Error")), "409": ok("Nothing to resume.", r("Error"))}))
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": obj(json!({"error": obj(json!({"code": s("string"), "message": s("string")}), &["code", "message"])}), &["error"]),
                "Checkpoint": obj(json!({"seq": s("integer"), "hash": s("string"), "at": s("integer"), "key_id": s("string"), "public_key": s("string"), "signature": s("string")}), &["seq", "hash", "at", "key_id", "public_key", "signature"]),
                "PolicyVersion": obj(json!({"version": s("integer"), "applied_at": {"type": "integer", "nullable": true, "description": "Milliseconds since the epoch."}, "actor": {"type": "string", "nullable": true}, "digest": {"type": "string", "nullable": true}}), &["version"]),
                "PolicyApplied": obj(json!({"version": s("integer"), "digest": s("string"), "job": {"type": "integer", "nullable": true}, "created": s("boolean")}), &["version", "digest", "job", "created"]),
                "SubjectView": obj(json!({
                    "subject": s("string"), "home": s("string"),
                    "categories": arr(obj(json!({"category": s("string"), "regions": arr(s("string")), "epoch": s("integer"), "objects": s("integer"), "bytes": s("integer"), "custodian": s("string"), "since": s("integer"), "state": s("string")}), &["category", "regions", "epoch", "objects", "bytes"])),
                    "exposure": arr(obj(json!({"authority": s("string"), "level": {"type": "string", "enum": ["none", "ciphertext", "plaintext"]}, "grounds": arr(s("string"))}), &["authority", "level"]))
                }), &["subject", "home", "categories", "exposure"]),
                "Plan": obj(json!({
                    "moves": arr(obj(json!({"subject": s("string"), "category": s("string"), "from": arr(s("string")), "to": arr(s("string")), "objects": s("integer"), "bytes": s("integer")}), &["subject", "category", "from", "to", "objects", "bytes"])),
                    "moves_truncated": s("boolean"),
                    "totals": obj(json!({"subjects": s("integer"), "objects": s("integer"), "bytes": s("integer"), "egress_cost": s("number"), "monthly_cost_before": s("number"), "monthly_cost_after": s("number")}), &["subjects", "objects", "bytes", "egress_cost", "monthly_cost_before", "monthly_cost_after"]),
                    "exposure_before": arr(r("ExposureRow")),
                    "exposure_after": arr(r("ExposureRow")),
                    "grounds": arr(r("Citation")),
                    "legal_notice": s("string")
                }), &["moves", "totals", "exposure_before", "exposure_after"]),
                "ExposureRow": obj(json!({"authority": s("string"), "home": s("string"), "subjects": s("integer"), "plaintext_subjects": s("integer"), "ciphertext_subjects": s("integer"), "grounds": {"type": "array", "items": s("string"), "description": "The reach rules behind this row: preset names (see Citation), or the ground of a hand-written rule."}}), &["authority", "home", "subjects", "plaintext_subjects", "ciphertext_subjects"]),
                "Citation": obj(json!({"preset": s("string"), "title": s("string"), "citations": arr(s("string")), "summary": s("string")}), &["preset", "title", "citations", "summary"]),
                "Residency": obj(json!({"rows": arr(obj(json!({"home": s("string"), "category": s("string"), "region": s("string"), "jurisdiction": s("string"), "subjects": s("integer"), "objects": s("integer"), "bytes": s("integer")}), &["home", "category", "region", "jurisdiction", "subjects", "objects", "bytes"]))}), &["rows"]),
                "Exposure": obj(json!({"rows": arr(r("ExposureRow")), "assumption": s("string"), "grounds": arr(r("Citation")), "legal_notice": s("string")}), &["rows"]),
                "Cost": obj(json!({"rows": arr(obj(json!({"region": s("string"), "jurisdiction": s("string"), "bytes": s("integer"), "monthly_cost": s("number")}), &["region", "jurisdiction", "bytes", "monthly_cost"])), "total_monthly_cost": s("number")}), &["rows", "total_monthly_cost"]),
                "Violations": obj(json!({"violations": arr(obj(json!({"subject": s("string"), "category": s("string"), "region": s("string"), "rule": s("string")}), &["subject", "category", "region", "rule"]))}), &["violations"]),
                "Demand": obj(json!({"authority": s("string"), "subject": s("string"), "level": s("string"), "copies": arr(obj(json!({"category": s("string"), "region": s("string"), "objects": s("integer"), "bytes": s("integer"), "level": s("string"), "grounds": arr(s("string"))}), &["category", "region", "objects", "bytes", "level"]))}), &["authority", "subject", "level", "copies"]),
                "MigrationStatus": obj(json!({"job": s("integer"), "state": {"type": "string", "enum": ["planning", "running", "paused", "cancelled", "done"]}, "units": s("integer"), "done": s("integer"), "committed": s("integer"), "in_flight": s("integer"), "pending": s("integer"), "failed": s("integer"), "cancelled": s("integer"), "bytes_total": s("integer"), "bytes_moved": s("integer"), "rate": s("number"), "eta_seconds": {"type": "number", "nullable": true}}), &["job", "state", "units", "bytes_total", "bytes_moved"])
            }
        }
    });
    with_roles(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route() {
        let doc = document();
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .map(|ops| ops.as_object().map(|o| o.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(documented, ROUTES.len(), "a documented route is not served");
        for p in super::super::auth::PERMISSIONS {
            let op = &doc["paths"][p.path][p.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} has no document", p.method, p.path);
            let summary = op["summary"].as_str().unwrap_or_default();
            assert!(!summary.contains("(admin"), "{summary}");
        }
        assert_eq!(
            doc["paths"]["/v1/demands"]["post"]["x-roles"],
            json!(["admin", "legal"])
        );
    }
}
