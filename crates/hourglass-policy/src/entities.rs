//! Turning core domain values into Cedar entities, requests and contexts.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
};

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use hourglass_core::{
    Error, Result,
    catalog::{Entitlement, Principal, Profile},
    policy::{Action, DecisionContext, Resource},
};

pub(crate) fn uid(kind: &str, id: &str) -> Result<EntityUid> {
    let ty = EntityTypeName::from_str(&format!("Hourglass::{kind}"))
        .map_err(|e| Error::internal(format!("entity type {kind}: {e}")))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

pub(crate) fn action_uid(action: Action) -> Result<EntityUid> {
    uid("Action", action.as_str())
}

pub(crate) fn principal_uid(p: &Principal) -> Result<EntityUid> {
    uid("Principal", p.id.as_str())
}

pub(crate) fn entitlement_uid(e: &Entitlement) -> Result<EntityUid> {
    uid("Entitlement", e.id.as_str())
}

pub(crate) fn profile_uid(p: &Profile) -> Result<EntityUid> {
    uid("Profile", p.id.as_str())
}

/// The resource's uid, followed by the uids of everything it is in.
pub(crate) fn resource_uids(r: Resource<'_>) -> Result<Vec<EntityUid>> {
    match r {
        Resource::Entitlement(e) => {
            let mut uids = vec![entitlement_uid(e)?];
            for p in &e.profiles {
                uids.push(uid("Profile", p)?);
            }
            Ok(uids)
        }
        Resource::Profile(p) => Ok(vec![profile_uid(p)?]),
    }
}

pub(crate) fn resource_entity(r: Resource<'_>) -> Result<Entity> {
    match r {
        Resource::Entitlement(e) => entitlement_entity(e),
        Resource::Profile(p) => profile_entity(p),
    }
}

fn profile_entity(p: &Profile) -> Result<Entity> {
    let mut attrs = HashMap::new();
    attrs.insert(
        "risk".to_owned(),
        RestrictedExpression::new_string(p.risk.as_str().to_owned()),
    );
    let max = i64::try_from(p.max_duration.as_secs()).unwrap_or(i64::MAX);
    attrs.insert(
        "max_duration_secs".to_owned(),
        RestrictedExpression::new_long(max),
    );
    Entity::new(profile_uid(p)?, attrs, HashSet::new())
        .map_err(|err| internal("profile")(err.to_string()))
}

fn internal(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::internal(format!("cedar {what}: {e}"))
}

pub(crate) fn principal_entity(p: &Principal) -> Result<Entity> {
    let mut attrs = HashMap::new();
    attrs.insert(
        "kind".to_owned(),
        RestrictedExpression::new_string(p.kind.as_str().to_owned()),
    );
    attrs.insert(
        "name".to_owned(),
        RestrictedExpression::new_string(p.id.as_str().to_owned()),
    );
    for (key, value) in [
        ("owner", &p.owner),
        ("manager", &p.manager),
        ("department", &p.department),
    ] {
        if let Some(v) = value {
            attrs.insert(key.to_owned(), RestrictedExpression::new_string(v.clone()));
        }
    }
    let parents = p
        .groups
        .iter()
        .map(|g| uid("Group", g))
        .collect::<Result<HashSet<_>>>()?;
    Entity::new(principal_uid(p)?, attrs, parents).map_err(|e| internal("principal")(e.to_string()))
}

pub(crate) fn entitlement_entity(e: &Entitlement) -> Result<Entity> {
    let mut attrs = HashMap::new();
    attrs.insert(
        "target".to_owned(),
        RestrictedExpression::new_string(e.target.to_string()),
    );
    attrs.insert(
        "risk".to_owned(),
        RestrictedExpression::new_string(e.risk.as_str().to_owned()),
    );
    let max = i64::try_from(e.max_duration.as_secs()).unwrap_or(i64::MAX);
    attrs.insert(
        "max_duration_secs".to_owned(),
        RestrictedExpression::new_long(max),
    );
    let parents = e
        .profiles
        .iter()
        .map(|p| uid("Profile", p))
        .collect::<Result<HashSet<_>>>()?;
    Entity::new(entitlement_uid(e)?, attrs, parents)
        .map_err(|err| internal("entitlement")(err.to_string()))
}

/// The group entities a principal names, so that group nesting is known to Cedar.
pub(crate) fn group_entities(groups: &[(String, Vec<String>)]) -> Result<Vec<Entity>> {
    groups
        .iter()
        .map(|(g, parents)| {
            let parents = parents
                .iter()
                .map(|p| uid("Group", p))
                .collect::<Result<HashSet<_>>>()?;
            Ok(Entity::new_no_attrs(uid("Group", g)?, parents))
        })
        .collect()
}

pub(crate) fn context(ctx: &DecisionContext, action: Action) -> Result<Context> {
    let mut pairs: Vec<(String, RestrictedExpression)> = vec![
        (
            "duration_secs".into(),
            RestrictedExpression::new_long(i64::try_from(ctx.duration_secs).unwrap_or(i64::MAX)),
        ),
        (
            "hour".into(),
            RestrictedExpression::new_long(i64::from(ctx.hour)),
        ),
        (
            "weekday".into(),
            RestrictedExpression::new_string(ctx.weekday.clone()),
        ),
        ("mfa".into(), RestrictedExpression::new_bool(ctx.mfa)),
        (
            "break_glass".into(),
            RestrictedExpression::new_bool(ctx.break_glass),
        ),
        ("oncall".into(), RestrictedExpression::new_bool(ctx.oncall)),
    ];
    if let Some(t) = &ctx.ticket {
        let mut fields = vec![
            (
                "ref".to_owned(),
                RestrictedExpression::new_string(t.reference.clone()),
            ),
            (
                "verified".to_owned(),
                RestrictedExpression::new_bool(t.verified),
            ),
        ];
        for (name, value) in [
            ("source", &t.source),
            ("status", &t.status),
            ("assignee", &t.assignee),
            ("priority", &t.priority),
        ] {
            if let Some(v) = value {
                fields.push((name.to_owned(), RestrictedExpression::new_string(v.clone())));
            }
        }
        let rec = RestrictedExpression::new_record(fields)
            .map_err(|e| internal("ticket")(e.to_string()))?;
        pairs.push(("ticket".into(), rec));
    }
    if let Some(ip) = ctx
        .source_ip
        .as_deref()
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
    {
        pairs.push(("source_ip".into(), RestrictedExpression::new_ip(ip)));
    }
    if action == Action::Approve {
        let requester = ctx
            .requester
            .as_ref()
            .ok_or_else(|| Error::internal("an Approve question needs the requester"))?;
        pairs.push((
            "requester".into(),
            RestrictedExpression::new_entity_uid(principal_uid(requester)?),
        ));
    }
    if action == Action::Exchange {
        let t = ctx
            .token
            .as_ref()
            .ok_or_else(|| Error::internal("an Exchange question needs the token"))?;
        let mut fields = vec![
            (
                "issuer".to_owned(),
                RestrictedExpression::new_string(t.issuer.clone()),
            ),
            (
                "subject".to_owned(),
                RestrictedExpression::new_string(t.subject.clone()),
            ),
        ];
        for (k, v) in &t.claims {
            if hourglass_core::policy::TOKEN_CLAIMS.contains(&k.as_str()) {
                fields.push((k.clone(), RestrictedExpression::new_string(v.clone())));
            }
        }
        let rec = RestrictedExpression::new_record(fields)
            .map_err(|e| internal("token")(e.to_string()))?;
        pairs.push(("token".into(), rec));
    }
    if action != Action::Approve
        && let Some(a) = &ctx.actor
    {
        pairs.push((
            "actor".into(),
            RestrictedExpression::new_entity_uid(principal_uid(a)?),
        ));
    }
    // `Request::new` checks the context against the schema.
    Context::from_pairs(pairs).map_err(|e| internal("context")(e.to_string()))
}
