//! The OpenAPI 3.1 document of the admin API, generated (utoipa) from the
//! handlers' `#[utoipa::path]`s and their types: the router and the
//! document come from one list of handlers (`super::api`). Each
//! operation's roles come from the permission table (`x-roles`), with the
//! 401 and 403 every protected route may answer.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::auth::{Allow, PERMISSIONS};

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `not_registered`, `already_registered`, `refused`,
    /// `busy`, `timeout`, `internal`…
    code: String,
    /// For people.
    message: String,
}

/// The document's frame: what the handlers do not say.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "domicile admin API",
        description = "Subjects, plans, migrations, reports, demands, verification, the ledger and the policy. Bearer tokens have a role: admin, operator, auditor or legal; each operation's `x-roles` lists the roles that may call it (docs/rest.md). JSON shapes are those of the CLI's `--format json`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer)
)]
pub(crate) struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// The document as served: the generated one, with each operation's roles
/// from [`PERMISSIONS`], and no security on the open routes.
pub(crate) fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialize");
        json!({})
    });
    for p in PERMISSIONS {
        let op = &mut doc["paths"][p.path][p.method.to_ascii_lowercase()];
        if !op.is_object() {
            continue;
        }
        match p.allow {
            Allow::Anyone => op["security"] = json!([]),
            Allow::Roles(roles) => {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                op["x-roles"] = json!(names);
                if let Some(d) = op["description"].as_str() {
                    op["description"] = json!(format!("{d}\n\nRoles: {}.", names.join(", ")));
                }
                let responses = &mut op["responses"];
                responses["401"] = error_response("No bearer token, or not a valid one.");
                responses["403"] = error_response("The token's role may not do this (`x-roles`).");
            }
        }
    }
    doc
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        finish(super::super::api().1)
    }

    /// (method, path) of every operation of a document.
    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                if item[*m].is_object() {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_has_exactly_the_routes_of_the_permission_table() {
        // The router and the document come from one list (`api`); the
        // permission table, which refuses any route it lacks, must list
        // exactly those routes too.
        let doc = document();
        let documented = operations(&doc);
        let permitted: BTreeSet<(String, String)> = PERMISSIONS
            .iter()
            .map(|p| (p.method.to_string(), p.path.to_string()))
            .collect();
        let undocumented: Vec<_> = permitted.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "in the table, not served: {undocumented:?}"
        );
        let unpermitted: Vec<_> = documented.difference(&permitted).collect();
        assert!(
            unpermitted.is_empty(),
            "served, not in the table: {unpermitted:?}"
        );
        assert!(documented.len() >= 35, "{} operations", documented.len());
    }

    #[test]
    fn every_operation_has_a_response_schema_and_its_roles() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            let ok: Vec<(&String, &Value)> = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(code, _)| code.starts_with('2'))
                .collect();
            assert!(!ok.is_empty(), "{method} {path} has no success response");
            for (code, r) in ok {
                let content = r["content"].as_object();
                let schema = content
                    .and_then(|c| c.values().next())
                    .map(|m| &m["schema"]);
                let Some(schema) = schema.filter(|s| s.is_object()) else {
                    panic!("{method} {path} {code} has no schema: {r}");
                };
                if let Some(name) = schema["$ref"].as_str() {
                    let name = name.trim_start_matches("#/components/schemas/");
                    assert!(
                        schemas.contains_key(name),
                        "{method} {path}: {name} undefined"
                    );
                }
            }
            let row = PERMISSIONS
                .iter()
                .find(|p| p.method == method && p.path == path)
                .unwrap();
            match row.allow {
                Allow::Anyone => assert_eq!(op["security"], json!([]), "{method} {path}"),
                Allow::Roles(roles) => {
                    assert_eq!(op["x-roles"].as_array().unwrap().len(), roles.len());
                    assert!(op["responses"]["403"].is_object(), "{method} {path}");
                }
            }
        }
        // Schemas come from the types: a few fields that only the types say.
        let props = |name: &str| {
            let s = &schemas[name];
            s["properties"]
                .as_object()
                .or_else(|| {
                    s["allOf"]
                        .as_array()
                        .and_then(|a| a.iter().find_map(|x| x["properties"].as_object()))
                })
                .unwrap_or_else(|| panic!("{name}: {s}"))
                .clone()
        };
        assert!(props("SubjectPage").contains_key("next"));
        assert!(props("MigrationStatus").contains_key("eta_seconds"));
        assert!(props("PlanBody").contains_key("exposure_after"));
        assert_eq!(
            doc["paths"]["/v1/demands"]["post"]["x-roles"],
            json!(["admin", "legal"])
        );
    }
}
