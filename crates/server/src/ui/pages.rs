//! One handler per console page. Each asks the engine what the REST
//! handler of the same data asks it, and renders HTML; engine errors are
//! told as the REST API tells them (`rest::ApiError`: what is the
//! caller's is said, the rest goes to the log). Nothing here applies a
//! policy: a plan is a what-if.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use domicile_core::Config;
use domicile_core::diff::policy_diff;
use domicile_core::ids::SubjectId;
use domicile_core::plan::Move;
use domicile_report_html::text::{bytes, money, rfc3339};
use domicile_report_html::{Flows, Focus, PlanView, Present, plan_fragment, present_fragment};
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{self, esc, form_open, page, pairs, para, table};
use super::session::{self, Session, csrf_matches};
use super::{Ui, View, Viewer, controls_migrations, sees_subject_ids};
use crate::rest::ApiError;

/// Moves a plan page lists (the totals cover all of them).
const PLAN_MOVES: usize = 200;
/// Ledger entries a subject's page lists, newest last.
const SUBJECT_LEDGER: usize = 500;

/// A page to send: its status and HTML.
#[derive(Debug)]
pub(crate) struct Shown {
    status: StatusCode,
    html: String,
}

impl IntoResponse for Shown {
    fn into_response(self) -> Response {
        (self.status, Html(self.html)).into_response()
    }
}

type Page = Result<Response, Shown>;

fn render(
    status: StatusCode,
    title: &str,
    s: Option<&Session>,
    v: Option<View>,
    body: &str,
) -> Shown {
    Shown {
        status,
        html: page(title, s, v, body),
    }
}

fn ok(title: &str, s: &Session, v: View, body: &str) -> Page {
    Ok(render(StatusCode::OK, title, Some(s), Some(v), body).into_response())
}

/// The page that says why a request failed.
fn failed(title: &str, s: &Session, v: View, e: impl Into<ApiError>) -> Shown {
    let e: ApiError = e.into();
    render(
        e.status(),
        title,
        Some(s),
        Some(v),
        &html::error(e.message()),
    )
}

/// Refuses a page the viewer's role may not see.
fn allowed(s: &Session, v: View) -> Result<(), Shown> {
    if v.open_to(s.role) {
        Ok(())
    } else {
        Err(render(
            StatusCode::FORBIDDEN,
            "Not allowed",
            Some(s),
            None,
            &html::error(&format!(
                "the {} role may not see the {} page",
                s.role,
                v.name().to_lowercase()
            )),
        ))
    }
}

/// A posted form, checked against the session's CSRF token.
fn form<T: for<'de> Deserialize<'de> + HasCsrf>(
    s: &Session,
    v: View,
    body: &[u8],
) -> Result<T, Shown> {
    let bad = |msg: &str| {
        render(
            StatusCode::BAD_REQUEST,
            "Refused",
            Some(s),
            Some(v),
            &html::error(msg),
        )
    };
    let f: T = serde_urlencoded::from_bytes(body)
        .map_err(|e| bad(&format!("the form is not valid: {e}")))?;
    if !csrf_matches(s, f.csrf()) {
        return Err(render(
            StatusCode::FORBIDDEN,
            "Refused",
            Some(s),
            Some(v),
            &html::error(
                "the form's session token is missing or stale: reload the page and try again",
            ),
        ));
    }
    Ok(f)
}

trait HasCsrf {
    fn csrf(&self) -> &str;
}

macro_rules! csrf_form {
    ($name:ident { $($field:ident),* }) => {
        #[derive(Debug, Deserialize)]
        pub(crate) struct $name {
            #[serde(default)]
            csrf: String,
            $(#[serde(default)] $field: String,)*
        }
        impl HasCsrf for $name {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    };
}

csrf_form!(CsrfOnly {});
csrf_form!(PlanForm { policy });
csrf_form!(SubjectForm { id });

/// The header of a view of the deployment: operator, policy version and
/// digest, and the time.
async fn deployment_header(ui: &Ui) -> Result<String, ApiError> {
    let acting = ui.app.engine.follow_policy().await?;
    Ok(pairs(
        "deployment",
        &[
            (
                "Operator".into(),
                acting.config.topology.operator.name.clone(),
            ),
            ("Policy version".into(), acting.version.to_string()),
            ("Policy digest".into(), acting.config.plan_digest()),
            ("Time (UTC)".into(), now()),
        ],
    ))
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    rfc3339(ms)
}

// ---------------------------------------------------------------------------
// Assets, login, logout
// ---------------------------------------------------------------------------

pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        html::SCRIPT,
    )
        .into_response()
}

pub(crate) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        html::style_sheet(),
    )
        .into_response()
}

pub(crate) async fn not_found() -> Shown {
    render(
        StatusCode::NOT_FOUND,
        "Not found",
        None,
        None,
        r#"<p>No such page. <a href="/ui/">Back to the console</a>.</p>"#,
    )
}

fn session_of(ui: &Ui, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session::cookie_id(headers)?;
    let s = ui.sessions.get(&id)?;
    Some((id, s))
}

pub(crate) async fn home(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    match session_of(&ui, &headers) {
        Some((_, s)) => {
            let first = View::ALL
                .iter()
                .find(|v| v.open_to(s.role))
                .map_or("/ui/plan", |v| v.path());
            Redirect::to(first).into_response()
        }
        None => Redirect::to("/ui/login").into_response(),
    }
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&html::error(m));
    }
    body.push_str(
        r#"<form method="post" action="/ui/login" class="login">
<label for="token">REST token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Log in</button>
</form>
<p class="notice">Log in with a token of the REST API (admin, operator, auditor or legal). The console shows what that token's role may see.</p>"#,
    );
    render(status, "Log in", None, None, &body).into_response()
}

pub(crate) async fn login_form(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if session_of(&ui, &headers).is_some() {
        return Redirect::to("/ui/").into_response();
    }
    login_page(StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(crate) async fn login(State(ui): State<Ui>, body: Bytes) -> Response {
    let token = serde_urlencoded::from_bytes::<LoginForm>(&body)
        .map(|f| f.token)
        .unwrap_or_default();
    let Some(caller) = (!token.trim().is_empty())
        .then(|| ui.tokens.holder(&token))
        .flatten()
    else {
        ui.app.metrics.access_denied("rest", "");
        return login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
    };
    let name = caller.name.clone();
    let Some((id, s)) = ui.sessions.open(caller) else {
        tracing::error!(
            "no console session could be opened (the random source or the session table failed)"
        );
        return login_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("internal error; see the server's log"),
        );
    };
    tracing::info!(token = %name, role = %s.role, "console login");
    (
        [(header::SET_COOKIE, session::set_cookie(&id, ui.secure))],
        Redirect::to("/ui/"),
    )
        .into_response()
}

pub(crate) async fn logout(State(ui): State<Ui>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some((id, s)) = session_of(&ui, &headers) {
        if let Err(refused) = form::<CsrfOnly>(&s, View::Overview, &body) {
            return refused.into_response();
        }
        ui.sessions.close(&id);
    }
    (
        [(header::SET_COOKIE, session::clear_cookie(ui.secure))],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Overview and exposure
// ---------------------------------------------------------------------------

pub(crate) async fn overview(State(ui): State<Ui>, v: Viewer) -> Page {
    let s = &v.session;
    let title = "Overview";
    allowed(s, View::Overview)?;
    let fail = |e: domicile_engine::Error| failed(title, s, View::Overview, e);
    let e = &ui.app.engine;
    let head = deployment_header(&ui)
        .await
        .map_err(|e| failed(title, s, View::Overview, e))?;
    let residency = e.residency().await.map_err(fail)?;
    let summary = e.present().await.map_err(fail)?;
    let violations = e.violations().await.map_err(fail)?;

    let mut body = head;
    let mut per_region: BTreeMap<(String, String), [i64; 3]> = BTreeMap::new();
    let mut per_home: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for r in &residency {
        let add = |c: &mut [i64; 3]| {
            c[0] += r.subjects;
            c[1] += r.objects;
            c[2] += r.bytes;
        };
        add(per_region
            .entry((r.region.clone(), r.jurisdiction.clone()))
            .or_default());
        add(per_home.entry(r.home.clone()).or_default());
    }
    let n = |c: &[i64; 3]| {
        vec![
            c[0].to_string(),
            c[1].to_string(),
            bytes(c[2].max(0) as u64),
        ]
    };
    let _ = write!(
        body,
        r#"<section id="counts"><h2>Counts</h2><p class="count violations-total">{}</p><div class="pair">"#,
        esc(&match violations.len() {
            0 => "No violations: every copy is where the policy allows.".to_string(),
            1 => "1 violation of the policy (listed below).".to_string(),
            n => format!("{n} violations of the policy (listed below)."),
        })
    );
    let rows: Vec<Vec<String>> = per_region
        .iter()
        .map(|((r, j), c)| [vec![r.clone(), j.clone()], n(c)].concat())
        .collect();
    body.push_str(&table(
        "per-region",
        "Per storage region",
        &[
            "region",
            "jurisdiction",
            "subjects × categories",
            "objects",
            "bytes",
        ],
        &rows,
    ));
    let rows: Vec<Vec<String>> = per_home
        .iter()
        .map(|(h, c)| [vec![h.clone()], n(c)].concat())
        .collect();
    body.push_str(&table(
        "per-home",
        "Per home country (every copy counts)",
        &["home", "subjects × categories", "objects", "bytes"],
        &rows,
    ));
    body.push_str("</div></section>\n");
    body.push_str(&present_fragment(
        &[Focus::Residency, Focus::Violations],
        &Present {
            residency: &residency,
            summary: &summary,
            violations: &violations,
        },
    ));
    ok(title, s, View::Overview, &body)
}

pub(crate) async fn exposure(State(ui): State<Ui>, v: Viewer) -> Page {
    let s = &v.session;
    let title = "Exposure";
    allowed(s, View::Exposure)?;
    let head = deployment_header(&ui)
        .await
        .map_err(|e| failed(title, s, View::Exposure, e))?;
    let summary = ui
        .app
        .engine
        .present()
        .await
        .map_err(|e| failed(title, s, View::Exposure, e))?;
    let body = head
        + &present_fragment(
            &[Focus::Exposure],
            &Present {
                residency: &[],
                summary: &summary,
                violations: &[],
            },
        );
    ok(title, s, View::Exposure, &body)
}

// ---------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------

fn plan_form_html(s: &Session, text: &str) -> String {
    format!(
        r#"<p>Paste a config file (or choose one) to see what applying its policy would do. Nothing is applied.</p>
{}<label for="policy">Policy (a config file's text)</label>
<textarea id="policy" name="policy" rows="14" spellcheck="false" required>{}</textarea>
<p class="upload"><label for="policy-file">or load a file</label> <input id="policy-file" type="file" accept=".toml,text/plain"></p>
<button type="submit" id="plan-button">Plan (nothing is applied)</button>
</form>
"#,
        form_open("/ui/plan", s, "plan"),
        esc(text)
    )
}

pub(crate) async fn plan_form(v: Viewer) -> Page {
    let s = &v.session;
    allowed(s, View::Plan)?;
    ok("Plan", s, View::Plan, &plan_form_html(s, ""))
}

pub(crate) async fn plan(State(ui): State<Ui>, v: Viewer, body: Bytes) -> Page {
    let s = &v.session;
    let title = "Plan";
    allowed(s, View::Plan)?;
    let mut f: PlanForm = form(s, View::Plan, &body)?;
    // Browsers post a text area's lines ended by CR LF.
    f.policy = f.policy.replace("\r\n", "\n");
    let e = &ui.app.engine;
    let base = e.file_config().base_dir.clone();
    let desired = match Config::parse("the pasted policy", &f.policy, &base) {
        Ok(c) => c,
        Err(err) => {
            let body = html::error(&err.to_string()) + &plan_form_html(s, &f.policy);
            return Err(render(
                StatusCode::BAD_REQUEST,
                title,
                Some(s),
                Some(View::Plan),
                &body,
            ));
        }
    };
    let fail = |err: domicile_engine::Error| failed(title, s, View::Plan, err);
    let residency = e.residency().await.map_err(fail)?;
    let before = Flows::from_residency(&residency);
    let mut after = before.clone();
    let present = e.config();
    for r in present
        .topology
        .regions
        .iter()
        .chain(&desired.topology.regions)
    {
        after.name_region(r.id.as_str(), &r.jurisdiction.to_string());
    }
    let mut moves: Vec<Move> = Vec::new();
    let summary = e
        .plan(&desired, |m| {
            after.apply(&m);
            if moves.len() < PLAN_MOVES {
                moves.push(m);
            }
        })
        .await
        .map_err(fail)?;
    if sees_subject_ids(s.role) {
        let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
        let names = e.subject_names(&tokens).await.map_err(fail)?;
        for m in &mut moves {
            m.subject = names.get(&m.token).cloned();
        }
    }

    let mut out = pairs(
        "planned",
        &[
            ("Planned policy digest".into(), desired.plan_digest()),
            ("Present policy digest".into(), present.plan_digest()),
            ("Time (UTC)".into(), now()),
        ],
    );
    out.push_str(r#"<section id="what-if"><h2>What applying it would do</h2>"#);
    out.push_str(&para(
        "notice",
        "A what-if: nothing has been applied or moved.",
    ));
    out.push_str(&summary_pairs(&summary));
    out.push_str("</section>\n");
    out.push_str(&diff_table(&present, &desired));
    out.push_str(&plan_fragment(&PlanView {
        summary: &summary,
        before: &before,
        after: &after,
        moves: &moves,
    }));
    out.push_str(r#"<section id="again"><h2>Plan another policy</h2>"#);
    out.push_str(&plan_form_html(s, &f.policy));
    out.push_str("</section>");
    ok(title, s, View::Plan, &out)
}

/// Every plain field of the plan's summary, of its totals and of any
/// other object in it (an estimate, say), by name: what the planner
/// reports is shown as it grows, with no list of fields kept here. Lists
/// (exposure, cost per region) are drawn by the plan's sections.
fn summary_pairs(summary: &domicile_core::plan::PlanSummary) -> String {
    match serde_json::to_value(summary) {
        Ok(v) => fields_pairs(&v),
        Err(_) => String::new(),
    }
}

fn fields_pairs(summary: &Value) -> String {
    fn text(key: &str, v: &Value) -> Option<String> {
        Some(match v {
            Value::Number(n) if key.contains("cost") => money(n.as_f64().unwrap_or(0.0)),
            Value::Number(n) if key.starts_with("bytes") => {
                n.as_u64().map_or_else(|| n.to_string(), bytes)
            }
            Value::Number(n) if key.contains("seconds") || key.contains("duration") => {
                duration_text(n.as_f64().unwrap_or(0.0))
            }
            Value::Number(n) => n.to_string(),
            Value::String(t) => t.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "-".into(),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
    let Value::Object(top) = summary else {
        return String::new();
    };
    let mut items = Vec::new();
    let mut nested = Vec::new();
    for (k, v) in top {
        match v {
            // The totals first, by their own names.
            Value::Object(inner) if k == "totals" => {
                for (ik, iv) in inner {
                    if let Some(t) = text(ik, iv) {
                        items.push((ik.replace('_', " "), t));
                    }
                }
            }
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    let key = format!("{k} {ik}");
                    if let Some(t) = text(&key, iv) {
                        nested.push((key.replace('_', " "), t));
                    }
                }
            }
            v => {
                if let Some(t) = text(k, v) {
                    nested.push((k.replace('_', " "), t));
                }
            }
        }
    }
    items.extend(nested);
    pairs("plan-summary", &items)
}

/// The policy's changes, per category and group of homes.
fn diff_table(present: &Config, desired: &Config) -> String {
    let changes = policy_diff(present, desired);
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            let req = |r: &domicile_core::diff::RequirementView| {
                format!(
                    "{} ×{}{}",
                    r.allowed.join(", "),
                    r.copies,
                    r.custodian
                        .as_ref()
                        .map(|c| format!(", key: {c}"))
                        .unwrap_or_default()
                )
            };
            vec![
                c.category.clone(),
                homes(&c.homes),
                req(&c.before),
                req(&c.after),
                c.newly_forbidden.join(", "),
            ]
        })
        .collect();
    format!(
        r#"<section id="diff"><h2>Policy changes</h2>{}</section>"#,
        table(
            "diff",
            "Allowed regions, copies and key custodian, before and after",
            &["category", "homes", "before", "after", "newly forbidden"],
            &rows,
        )
    )
}

/// The homes of a change: all of them when few, else the first and a
/// count (a change for "every other home" lists most of the world).
fn homes(homes: &[domicile_core::jurisdiction::Jurisdiction]) -> String {
    const SHOWN: usize = 12;
    let first: Vec<String> = homes.iter().take(SHOWN).map(|h| h.to_string()).collect();
    if homes.len() <= SHOWN {
        first.join(" ")
    } else {
        format!(
            "{} … and {} more ({} homes)",
            first.join(" "),
            homes.len() - SHOWN,
            homes.len()
        )
    }
}

/// Seconds as a person reads them.
fn duration_text(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

// ---------------------------------------------------------------------------
// Migration
// ---------------------------------------------------------------------------

/// The current (or last) job, as the page and its script show it.
async fn migration_view(ui: &Ui) -> Result<Value, ApiError> {
    let m = match ui.app.engine.migration_status(None).await {
        Ok(m) => m,
        Err(domicile_engine::Error::NotFound(_)) => {
            return Ok(json!({"job": null, "state": "none", "finished": true,
                             "units": 0, "done": 0, "percent": 0, "units_text": "-",
                             "bytes_text": "-", "rate_text": "-", "eta_text": "-", "failed": 0}));
        }
        Err(e) => return Err(e.into()),
    };
    let percent = if m.units > 0 {
        (m.done + m.cancelled) * 100 / m.units
    } else if m.finished_at.is_some() {
        100
    } else {
        0
    };
    Ok(json!({
        "job": m.job,
        "state": m.state,
        "finished": m.finished_at.is_some(),
        "units": m.units,
        "done": m.done,
        "percent": percent,
        "failed": m.failed,
        "units_text": format!("{} of {} units done ({} in flight, {} pending, {} failed, {} cancelled)",
            m.done, m.units, m.in_flight, m.pending, m.failed, m.cancelled),
        "bytes_text": format!("{} of {}", bytes(m.bytes_moved.max(0) as u64), bytes(m.bytes_total.max(0) as u64)),
        "rate_text": format!("{}/s", bytes(m.rate.max(0.0) as u64)),
        "eta_text": m.eta_seconds.map_or_else(|| "-".to_string(), duration_text),
        "started": rfc3339(m.created_at),
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MigrationQuery {
    done: Option<String>,
}

const ACTIONS: [(&str, &str); 3] = [
    ("pause", "Pause"),
    ("resume", "Resume"),
    ("cancel", "Cancel"),
];

fn migration_html(s: &Session, m: &Value, note: Option<&str>) -> String {
    let text = |k: &str| match &m[k] {
        Value::String(t) => t.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let mut out = String::new();
    if let Some(n) = note {
        out.push_str(n);
    }
    let _ = write!(
        out,
        r#"<section id="migration" data-poll="/ui/migration.json" data-state="{state}">
<h2>Current migration</h2>
<dl class="meta progress">
<dt>Job</dt><dd id="m-job">{job}</dd>
<dt>State</dt><dd id="m-state">{state}</dd>
<dt>Progress</dt><dd><progress id="m-bar" max="100" value="{pct}">{pct}%</progress> <span id="m-percent">{pct}%</span></dd>
<dt>Units</dt><dd id="m-units">{units}</dd>
<dt>Bytes</dt><dd id="m-bytes">{bytes}</dd>
<dt>Rate</dt><dd id="m-rate">{rate}</dd>
<dt>Time left</dt><dd id="m-eta">{eta}</dd>
</dl>
</section>
"#,
        state = esc(&text("state")),
        job = esc(&text("job")),
        pct = esc(&text("percent")),
        units = esc(&text("units_text")),
        bytes = esc(&text("bytes_text")),
        rate = esc(&text("rate_text")),
        eta = esc(&text("eta_text")),
    );
    if controls_migrations(s.role) {
        out.push_str(r#"<section id="controls" class="controls"><h2>Control</h2>"#);
        for (action, label) in ACTIONS {
            out.push_str(&form_open(&format!("/ui/migration/{action}"), s, "action"));
            let confirm = if action == "cancel" {
                r#" data-confirm="Cancel the migration? Units already moved stay moved.""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<button type="submit" id="{action}-button"{confirm}>{label}</button></form>"#
            );
        }
        out.push_str("</section>\n");
    }
    out.push_str(&para(
        "notice",
        "The page follows the job as it runs. A migration starts when a policy is applied (domicile policy apply, or POST /v1/policy).",
    ));
    out
}

pub(crate) async fn migration(
    State(ui): State<Ui>,
    v: Viewer,
    Query(q): Query<MigrationQuery>,
) -> Page {
    let s = &v.session;
    let title = "Migration";
    allowed(s, View::Migration)?;
    let m = migration_view(&ui)
        .await
        .map_err(|e| failed(title, s, View::Migration, e))?;
    let note = q
        .done
        .as_deref()
        .and_then(|d| ACTIONS.iter().find(|(a, _)| *a == d))
        .map(|(a, _)| para("done", &format!("Asked to {a} the migration.")));
    ok(
        title,
        s,
        View::Migration,
        &migration_html(s, &m, note.as_deref()),
    )
}

pub(crate) async fn migration_json(State(ui): State<Ui>, v: Viewer) -> Response {
    if !View::Migration.open_to(v.session.role) {
        return StatusCode::FORBIDDEN.into_response();
    }
    match migration_view(&ui).await {
        Ok(m) => axum::Json(m).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn migration_action(
    State(ui): State<Ui>,
    v: Viewer,
    Path(action): Path<String>,
    body: Bytes,
) -> Page {
    let s = &v.session;
    let title = "Migration";
    let _: CsrfOnly = form(s, View::Migration, &body)?;
    if !controls_migrations(s.role) {
        return Err(render(
            StatusCode::FORBIDDEN,
            title,
            Some(s),
            Some(View::Migration),
            &html::error(&format!(
                "the {} role may not pause, resume or cancel a migration",
                s.role
            )),
        ));
    }
    let Some((action, _)) = ACTIONS.iter().find(|(a, _)| *a == action) else {
        return Err(render(
            StatusCode::NOT_FOUND,
            title,
            Some(s),
            Some(View::Migration),
            &html::error("actions are pause, resume and cancel"),
        ));
    };
    let done = domicile_engine::actor::acting_as(
        format!("console:{}", s.name),
        crate::rest::migration_action(State(ui.app.clone()), Path(action.to_string())),
    )
    .await;
    match done {
        Ok(_) => {
            tracing::info!(token = %s.name, action, "console migration action");
            Ok(Redirect::to(&format!("/ui/migration?done={action}")).into_response())
        }
        Err(e) => {
            let m = migration_view(&ui)
                .await
                .unwrap_or_else(|_| json!({"state": "unknown"}));
            let note = html::error(e.message());
            Err(render(
                e.status(),
                title,
                Some(s),
                Some(View::Migration),
                &migration_html(s, &m, Some(&note)),
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Subject
// ---------------------------------------------------------------------------

fn subject_form_html(s: &Session, id: &str) -> String {
    format!(
        r#"{}<label for="subject-id">Subject id</label> <input id="subject-id" name="id" value="{}" required autocomplete="off"> <button type="submit">Look up</button></form>
<p class="notice">The id is posted, never put in the address, so it stays out of logs and history.</p>"#,
        form_open("/ui/subject", s, "lookup"),
        esc(id)
    )
}

pub(crate) async fn subject_form(v: Viewer) -> Page {
    let s = &v.session;
    allowed(s, View::Subject)?;
    ok("Subject", s, View::Subject, &subject_form_html(s, ""))
}

pub(crate) async fn subject(State(ui): State<Ui>, v: Viewer, body: Bytes) -> Page {
    let s = &v.session;
    let title = "Subject";
    allowed(s, View::Subject)?;
    let f: SubjectForm = form(s, View::Subject, &body)?;
    let again = subject_form_html(s, &f.id);
    let refuse = |e: ApiError| {
        render(
            e.status(),
            title,
            Some(s),
            Some(View::Subject),
            &(html::error(e.message()) + &again),
        )
    };
    let id = SubjectId::from_str(f.id.trim())
        .map_err(|e| refuse(ApiError::bad_request(e.to_string())))?;
    let e = &ui.app.engine;
    let view = e.show_subject(&id).await.map_err(|e| refuse(e.into()))?;
    let ledger = e.subject_ledger(&id).await.map_err(|e| refuse(e.into()))?;

    let mut out = pairs(
        "subject",
        &[
            ("Subject".into(), view.subject.clone()),
            ("Home".into(), view.home.to_string()),
        ],
    );
    let rows: Vec<Vec<String>> = view
        .categories
        .iter()
        .map(|c| {
            vec![
                c.category.clone(),
                c.regions.join(", "),
                c.custodian.clone(),
                c.epoch.to_string(),
                c.objects.to_string(),
                bytes(c.bytes.max(0) as u64),
                c.state.clone(),
                rfc3339(c.since),
            ]
        })
        .collect();
    out.push_str(r#"<section id="copies"><h2>Copies</h2>"#);
    out.push_str(&table(
        "copies",
        "Where each category of the subject's data is stored, and who holds its key",
        &[
            "category",
            "regions",
            "custodian",
            "epoch",
            "objects",
            "bytes",
            "state",
            "since",
        ],
        &rows,
    ));
    out.push_str("</section>\n");
    let rows: Vec<Vec<String>> = view
        .exposure
        .iter()
        .map(|a| {
            vec![
                a.authority.to_string(),
                serde_json::to_value(a.level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", a.level).to_lowercase()),
                a.grounds.join(", "),
            ]
        })
        .collect();
    out.push_str(r#"<section id="compel"><h2>Who could compel it</h2>"#);
    out.push_str(&table(
        "compel",
        "Authorities within reach of this subject's data",
        &["authority", "reach", "grounds"],
        &rows,
    ));
    out.push_str(&para("notice", domicile_core::exposure::ASSUMPTION));
    out.push_str(&para("notice", domicile_core::presets::NOT_LEGAL_ADVICE));
    out.push_str("</section>\n");
    let skipped = ledger.len().saturating_sub(SUBJECT_LEDGER);
    let rows: Vec<Vec<String>> = ledger
        .iter()
        .skip(skipped)
        .map(|l| {
            vec![
                l.seq.to_string(),
                rfc3339(l.at),
                l.kind.clone(),
                l.actor.clone(),
                l.body.clone(),
            ]
        })
        .collect();
    out.push_str(r#"<section id="history"><h2>Ledger history</h2>"#);
    if skipped > 0 {
        out.push_str(&para(
            "",
            &format!("The last {SUBJECT_LEDGER} of {} entries.", ledger.len()),
        ));
    }
    out.push_str(&table(
        "history",
        "The ledger's entries about this subject, oldest first",
        &["seq", "at", "kind", "actor", "entry"],
        &rows,
    ));
    out.push_str("</section>\n");
    out.push_str(&again);
    ok(title, s, View::Subject, &out)
}

// ---------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------

pub(crate) async fn ledger(State(ui): State<Ui>, v: Viewer) -> Page {
    let s = &v.session;
    let title = "Ledger";
    allowed(s, View::Ledger)?;
    let fail = |e: domicile_engine::Error| failed(title, s, View::Ledger, e);
    let e = &ui.app.engine;
    let report = e.verify_ledger().await.map_err(fail)?;
    let checkpoints = e.ledger_checkpoints().await.map_err(fail)?;
    let verdict = if report.ok {
        format!(
            "The ledger verifies: {} entries chained, {} signed checkpoints match.",
            report.entries, report.checkpoints
        )
    } else {
        format!(
            "The ledger does NOT verify: {}",
            report.error.as_deref().unwrap_or("unknown failure")
        )
    };
    let mut out = format!(
        r#"<section id="verify"><h2>Verification</h2>{}"#,
        para(
            if report.ok {
                "count verdict ok"
            } else {
                "count verdict failed"
            },
            &verdict
        )
    );
    out.push_str(&pairs(
        "ledger-head",
        &[
            ("Entries".into(), report.entries.to_string()),
            ("Head sequence".into(), report.head_seq.to_string()),
            ("Head hash".into(), report.head_hash.clone()),
            ("Checkpoints matched".into(), report.checkpoints.to_string()),
            ("Verified at (UTC)".into(), now()),
        ],
    ));
    out.push_str("</section>\n");
    let rows: Vec<Vec<String>> = checkpoints
        .iter()
        .map(|c| {
            vec![
                c.seq.to_string(),
                rfc3339(c.at),
                c.hash.clone(),
                c.key_id.clone(),
                c.signature.clone(),
            ]
        })
        .collect();
    out.push_str(r#"<section id="checkpoints"><h2>Signed checkpoints</h2>"#);
    out.push_str(&table(
        "checkpoints",
        "The ledger's head, signed (Ed25519) at each checkpoint",
        &["seq", "at", "hash", "key", "signature"],
        &rows,
    ));
    out.push_str("</section>\n");
    ok(title, s, View::Ledger, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_summary_shows_every_plain_field_it_has() {
        let html = fields_pairs(&json!({
            "totals": {"units": 12, "egress_cost": 0.5, "bytes_transferred": 2048,
                       "estimated_seconds": 90.0},
            "estimate": {"duration_seconds": 7322, "rate_source": "measured <copies>"},
            "subjects_seen": 3,
            "exposure_before": [{"authority": "CN"}],
        }));
        for (k, v) in [
            ("units", "12"),
            ("egress cost", "$0.5000"),
            ("bytes transferred", "2.0 KiB"),
            ("estimated seconds", "1 min 30 s"),
            ("estimate duration seconds", "2 h 2 min"),
            ("estimate rate source", "measured &lt;copies&gt;"),
            ("subjects seen", "3"),
        ] {
            assert!(
                html.contains(&format!("<dt>{k}</dt><dd>{v}</dd>")),
                "{k}: {html}"
            );
        }
        assert!(!html.contains("exposure"), "{html}");
        assert!(html.find("units") < html.find("subjects seen"), "{html}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(0.4), "0 s");
        assert_eq!(duration_text(59.0), "59 s");
        assert_eq!(duration_text(61.0), "1 min 1 s");
        assert_eq!(duration_text(7322.0), "2 h 2 min");
        assert_eq!(duration_text(f64::NAN), "-");
        assert_eq!(duration_text(-1.0), "-");
    }
}
