//! A loaded, validated policy set and its scope index.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    sync::{Arc, Mutex},
};

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, Entities, Policy, PolicyId,
    PolicySet, Request, ResourceConstraint, Schema, ValidationMode, Validator,
};
use hourglass_core::{
    Error, Result,
    policy::{Action, Decision, PolicyDecider, PolicyQuery, Resource},
};
use sha2::{Digest, Sha256};

use crate::{SCHEMA, entities};

/// One policy file's name and text.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// Why a policy set could not be loaded. Lists every problem found, with the file it is in.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid policy set:\n  {}", problems.join("\n  "))]
pub struct PolicyError {
    pub problems: Vec<String>,
}

impl PolicyError {
    pub(crate) fn one(problem: impl Into<String>) -> Self {
        PolicyError {
            problems: vec![problem.into()],
        }
    }
}

/// Where a policy can apply, by the resource in its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ResourceKey {
    /// Unconstrained: may apply to any resource.
    Any,
    /// `resource is T`: may apply to any resource of type T.
    Type(String),
    /// `resource == X`: applies only to X.
    Eq(String),
    /// `resource in X`: applies only to X and what is in X.
    In(String),
}

/// Prepared Cedar inputs of one question (see [`PolicySetEngine::bare_inputs`]).
pub struct BareInputs {
    request: Request,
    entities: Entities,
}

/// A validated policy set, indexed by scope.
pub struct PolicySetEngine {
    schema: Schema,
    all: PolicySet,
    hash: String,
    /// action → resource key → policies.
    index: BTreeMap<Action, BTreeMap<ResourceKey, Vec<Policy>>>,
    /// Group nesting known to Cedar: (group, parent groups).
    groups: Vec<(String, Vec<String>)>,
    slices: Mutex<HashMap<(Action, String), Arc<PolicySet>>>,
    authorizer: Authorizer,
}

impl std::fmt::Debug for PolicySetEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySetEngine")
            .field("hash", &self.hash)
            .field("policies", &self.len())
            .finish()
    }
}

fn schema() -> std::result::Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _warnings)| s)
        .map_err(|e| PolicyError::one(format!("schema: {e}")))
}

fn action_of(uid: &cedar_policy::EntityUid) -> Option<Action> {
    let id = uid.id().unescaped();
    Action::ALL.into_iter().find(|a| a.as_str() == id)
}

impl PolicySetEngine {
    /// Parses, names and validates the sources. Every policy gets its `@id("…")` annotation as
    /// its id, or `FILE#N` when it has none; ids must be unique.
    pub fn load(
        sources: &[PolicySource],
        groups: Vec<(String, Vec<String>)>,
    ) -> std::result::Result<Self, PolicyError> {
        let schema = schema()?;
        let mut problems = Vec::new();
        let mut all = PolicySet::new();
        for src in sources {
            let parsed = match PolicySet::from_str(&src.text) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{}: {e}", src.name));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(format!("{}: templates are not supported", src.name));
            }
            // PolicySet::from_str numbers policies policy0, policy1… in source order.
            let mut policies: Vec<&Policy> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (n, p) in policies.into_iter().enumerate() {
                let id = p
                    .annotation("id")
                    .map_or_else(|| format!("{}#{n}", src.name), str::to_owned);
                if let Err(e) = all.add(p.new_id(PolicyId::new(&id))) {
                    problems.push(format!("{}: policy {id:?}: {e}", src.name));
                }
            }
        }
        if problems.is_empty() {
            let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
            for e in result.validation_errors() {
                problems.push(format!("policy {}: {e}", e.policy_id()));
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }
        let hash = hash_of(&all);
        let mut index: BTreeMap<Action, BTreeMap<ResourceKey, Vec<Policy>>> = BTreeMap::new();
        for p in all.policies() {
            let actions: Vec<Action> = match p.action_constraint() {
                ActionConstraint::Any => Action::ALL.to_vec(),
                ActionConstraint::Eq(a) => action_of(&a).into_iter().collect(),
                ActionConstraint::In(list) => list.iter().filter_map(action_of).collect(),
            };
            let key = match p.resource_constraint() {
                ResourceConstraint::Eq(uid) => ResourceKey::Eq(uid.to_string()),
                ResourceConstraint::In(uid) | ResourceConstraint::IsIn(_, uid) => {
                    ResourceKey::In(uid.to_string())
                }
                ResourceConstraint::Is(ty) => ResourceKey::Type(ty.to_string()),
                ResourceConstraint::Any => ResourceKey::Any,
            };
            for a in actions {
                index
                    .entry(a)
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .push(p.clone());
            }
        }
        Ok(PolicySetEngine {
            schema,
            all,
            hash,
            index,
            groups,
            slices: Mutex::new(HashMap::new()),
            authorizer: Authorizer::new(),
        })
    }

    /// Reads every `*.cedar` file in `dir` (sorted by name).
    pub fn load_dir(
        dir: &std::path::Path,
        groups: Vec<(String, Vec<String>)>,
    ) -> std::result::Result<Self, PolicyError> {
        Self::load(&read_dir(dir)?, groups)
    }

    pub fn len(&self) -> usize {
        self.all.policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy ids in the set, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.all.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    /// The policies that may apply to `action` on `resource`: those whose resource scope is
    /// open, names the resource's type, or names it or something it is in.
    fn scoped(&self, action: Action, resource: Resource<'_>) -> Result<Vec<&Policy>> {
        let uids = entities::resource_uids(resource)?;
        let ty = uids
            .first()
            .map(|u| u.type_name().to_string())
            .unwrap_or_default();
        let own = uids.first().map(ToString::to_string).unwrap_or_default();
        let keys = [
            ResourceKey::Any,
            ResourceKey::Type(ty),
            ResourceKey::Eq(own),
        ]
        .into_iter()
        .chain(uids.iter().map(|u| ResourceKey::In(u.to_string())));
        let mut out: Vec<&Policy> = Vec::new();
        if let Some(by_res) = self.index.get(&action) {
            for k in keys {
                for p in by_res.get(&k).into_iter().flatten() {
                    // A policy can sit under two keys only if two ancestors match; take it once.
                    if !out.iter().any(|o| o.id() == p.id()) {
                        out.push(p);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The slice of the set for `action` on `resource`, cached per (action, resource).
    fn slice(&self, action: Action, resource: Resource<'_>) -> Result<Arc<PolicySet>> {
        let key = (
            action,
            format!("{:?}", entities::resource_uids(resource)?.first()),
        );
        let mut cache = self
            .slices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache.get(&key) {
            return Ok(Arc::clone(s));
        }
        let mut set = PolicySet::new();
        for p in self.scoped(action, resource)? {
            set.add(p.clone())
                .map_err(|e| Error::internal(format!("policy slice: {e}")))?;
        }
        let set = Arc::new(set);
        cache.insert(key, Arc::clone(&set));
        Ok(set)
    }

    /// The ids of the `permit` policies for `action` whose scope can reach `resource`: the
    /// paths that a policy test must cover. (Scope only: a `when` clause may still never hold,
    /// so this over-approximates, which is the safe side for a coverage check.)
    pub fn permits_reaching(&self, action: Action, resource: Resource<'_>) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .scoped(action, resource)?
            .into_iter()
            .filter(|p| p.effect() == Effect::Permit)
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Decides with the whole set, for comparison in tests and benchmarks.
    pub fn decide_unsliced(&self, q: PolicyQuery<'_>) -> Result<Decision> {
        self.evaluate(&self.all, q)
    }

    /// The Cedar request and entities for a question.
    fn inputs(&self, q: PolicyQuery<'_>) -> Result<(Request, Entities)> {
        let principal = entities::principal_entity(q.principal)?;
        let resource = entities::resource_entity(q.resource)?;
        let mut list = vec![principal, resource];
        if let Some(r) = &q.context.requester
            && r.id != q.principal.id
        {
            list.push(entities::principal_entity(r)?);
        }
        if let Some(a) = &q.context.actor
            && a.id != q.principal.id
            && q.context.requester.as_ref().is_none_or(|r| r.id != a.id)
        {
            list.push(entities::principal_entity(a)?);
        }
        list.extend(entities::group_entities(&self.groups)?);
        let ents = Entities::from_entities(list, Some(&self.schema))
            .map_err(|e| Error::internal(format!("cedar entities: {e}")))?;
        let resource_uid = entities::resource_uids(q.resource)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("a resource without a uid"))?;
        let request = Request::new(
            entities::principal_uid(q.principal)?,
            entities::action_uid(q.action)?,
            resource_uid,
            entities::context(q.context, q.action)?,
            Some(&self.schema),
        )
        .map_err(|e| Error::internal(format!("cedar request: {e}")))?;
        Ok((request, ents))
    }

    /// The Cedar inputs of a question, built ahead of time, for measuring the bare
    /// whole-set call ([`Self::decide_bare`]) that the sliced path is compared with.
    pub fn bare_inputs(&self, q: PolicyQuery<'_>) -> Result<BareInputs> {
        let (request, entities) = self.inputs(q)?;
        Ok(BareInputs { request, entities })
    }

    /// Cedar's `is_authorized` over the whole set, and nothing else: whether it allows, and
    /// the determining policy ids, sorted.
    pub fn decide_bare(&self, b: &BareInputs) -> (bool, Vec<String>) {
        let response = self
            .authorizer
            .is_authorized(&b.request, &self.all, &b.entities);
        (
            response.decision() == CedarDecision::Allow,
            determining(&response),
        )
    }

    fn evaluate(&self, set: &PolicySet, q: PolicyQuery<'_>) -> Result<Decision> {
        let (request, ents) = self.inputs(q)?;
        let response = self.authorizer.is_authorized(&request, set, &ents);
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow,
            policy_ids: determining(&response),
            policy_hash: self.hash.clone(),
            errors: response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect(),
        })
    }
}

impl PolicyDecider for PolicySetEngine {
    fn decide(&self, q: PolicyQuery<'_>) -> Result<Decision> {
        let slice = self.slice(q.action, q.resource)?;
        self.evaluate(&slice, q)
    }

    fn policy_hash(&self) -> String {
        self.hash.clone()
    }
}

/// The ids of the policies that determined a response, sorted.
fn determining(response: &cedar_policy::Response) -> Vec<String> {
    let mut ids: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    ids.sort();
    ids
}

/// SHA-256 over the policies sorted by id: each id and its text, length-prefixed.
fn hash_of(set: &PolicySet) -> String {
    let mut items: Vec<(String, String)> = set
        .policies()
        .map(|p| (p.id().to_string(), p.to_string()))
        .collect();
    items.sort();
    let mut h = Sha256::new();
    for (id, text) in items {
        for part in [id, text] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn read_dir(dir: &std::path::Path) -> std::result::Result<Vec<PolicySource>, PolicyError> {
    let sources = read_files(dir, "cedar")?;
    if sources.is_empty() {
        return Err(PolicyError::one(format!(
            "{}: no .cedar policy files",
            dir.display()
        )));
    }
    Ok(sources)
}

/// Reads every `*.EXT` file in `dir`, sorted by name.
pub(crate) fn read_files(
    dir: &std::path::Path,
    ext: &str,
) -> std::result::Result<Vec<PolicySource>, PolicyError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| PolicyError::one(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| PolicyError::one(format!("{}: {e}", p.display())))?;
            let name = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Ok(PolicySource { name, text })
        })
        .collect()
}
