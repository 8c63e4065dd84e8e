//! The operator on the real control plane: what it writes, how it follows the cluster, how it
//! cleans up, and what it refuses. Each trial runs its own operator process (under the chart's
//! ServiceAccount) scoped to the trial's HostRouters, and its own namespaces.

//!
//! - [`routing`]: what is written for the selected Services, and how it follows the cluster;
//! - [`ownership`]: drift, deletion, conflicts, foreign objects, orphans;
//! - [`admission`]: what admission refuses, and what Envoy and Gloo accept;
//! - [`lifecycle`]: restarts and late arrivals;
//! - [`faults`]: the control plane failing under the operator;
//! - [`crash`]: the operator killed at random moments during churn;
//! - [`churn`]: routers created and deleted over and over, with and without the operator;
//! - [`coalescing`]: lone changes and storms of changes, and the Proxy writes they cost;
//! - [`podsecurity`]: the Pods admitted at PodSecurity `restricted`;
//! - [`rbac`]: every verb of the chart's RBAC is needed;
//! - [`status`]: status and Events that tell the truth;
//! - [`gateway_api`]: the Gateway API backend's objects, before an implementation judges them;
//! - [`tenancy`]: which namespaces a router may publish;
//! - [`fleet`]: the Envoy fleet's autoscaler, disruption budget, pod and Service knobs, with
//!   the controllers that act on them;
//! - [`dashboard`]: the chart's Grafana dashboard reads only what `/metrics` exports.

mod admission;
mod churn;
mod coalescing;
mod crash;
mod dashboard;
mod faults;
mod fleet;
mod gateway_api;
mod lifecycle;
mod ownership;
mod podsecurity;
mod rbac;
mod routing;
mod status;
mod tenancy;

use std::time::Duration;

use hostrouter_e2e::Suite;
use libtest_mimic::Trial;

/// How fast a change in the cluster must reach the Proxy.
pub const PROPAGATION: Duration = Duration::from_secs(2);
/// How long the real garbage collector may take.
pub const GC_TIMEOUT: Duration = Duration::from_secs(90);

pub fn trials(suite: &Suite) -> Vec<Trial> {
    vec![
        suite.trial(
            "operator::routes_every_tcp_port_of_selected_namespaces",
            |cx| async move { routing::routes_selected_namespaces(&cx).await },
        ),
        suite.trial(
            "operator::follows_services_and_namespace_labels",
            |cx| async move { routing::follows_the_cluster(&cx).await },
        ),
        suite.trial("operator::reverts_drift", |cx| async move {
            ownership::reverts_drift(&cx).await
        }),
        suite.trial(
            "operator::reverts_additions_in_lists_maps_and_the_pod_spec",
            |cx| async move { ownership::reverts_additions(&cx).await },
        ),
        suite.trial(
            "operator::deletion_removes_all_four_objects",
            |cx| async move { ownership::deletion_cleans_up(&cx).await },
        ),
        suite.trial(
            "operator::proxy_name_conflict_hands_over",
            |cx| async move { ownership::proxy_name_conflict(&cx).await },
        ),
        suite.trial(
            "operator::gateway_api_backend_writes_switches_and_cleans_up",
            |cx| async move { gateway_api::writes_switches_and_cleans_up(&cx).await },
        ),
        suite.trial(
            "operator::envoy_fleet_autoscales_keeps_a_budget_and_rolls_only_on_pod_changes",
            |cx| async move { fleet::production_fleet(&cx).await },
        ),
        suite.trial(
            "operator::rejects_invalid_specs_at_admission",
            |cx| async move { admission::rejects_invalid_specs(&cx).await },
        ),
        suite.trial(
            "operator::restart_with_nothing_changed_writes_nothing",
            |cx| async move { lifecycle::restart_writes_nothing(&cx).await },
        ),
        suite.trial(
            "operator::generated_config_passes_envoy_and_gloo_schemas",
            |cx| async move { admission::generated_config_is_valid(&cx).await },
        ),
        suite.trial(
            "operator::duplicate_domains_are_dropped_and_reported",
            |cx| async move { routing::duplicate_domains(&cx).await },
        ),
        suite.trial(
            "operator::a_shard_never_takes_another_shards_proxy",
            |cx| async move { ownership::shards_do_not_steal(&cx).await },
        ),
        suite.trial(
            "operator::foreign_object_with_our_name_is_left_alone",
            |cx| async move { ownership::foreign_object(&cx).await },
        ),
        suite.trial(
            "operator::orphaned_proxy_is_deleted_and_other_shards_are_left_alone",
            |cx| async move { ownership::orphaned_proxies(&cx).await },
        ),
        suite.trial(
            "operator::sigterm_exits_in_time_while_the_api_server_is_silent",
            |cx| async move { lifecycle::bounded_shutdown(&cx).await },
        ),
        suite.trial(
            "operator::survives_api_server_and_etcd_restarts_and_an_outage",
            |cx| async move { faults::control_plane_faults(&cx).await },
        ),
        suite.trial(
            "operator::converges_exactly_after_kills_during_churn",
            |cx| async move { crash::crash_during_churn(&cx).await },
        ),
        suite.trial(
            "operator::create_delete_cycles_leave_no_orphan_and_no_finalizer",
            |cx| async move { churn::create_delete_cycles(&cx).await },
        ),
        suite.trial(
            "operator::envoy_and_operator_pods_pass_pod_security_restricted",
            |cx| async move { podsecurity::restricted_pods(&cx).await },
        ),
        suite.trial(
            "operator::every_verb_of_the_charts_rbac_is_needed",
            |cx| async move { rbac::every_verb_is_needed(&cx).await },
        ),
        suite.trial(
            "operator::grafana_dashboard_queries_use_only_exported_metrics",
            |cx| async move { dashboard::queries_use_only_exported_metrics(&cx).await },
        ),
        suite.trial(
            "operator::recovers_when_gloos_crd_appears",
            |cx| async move { lifecycle::missing_gloo_crd(&cx).await },
        ),
    ]
    .into_iter()
    .chain(coalescing::trials(suite))
    .chain(status::trials(suite))
    .chain(tenancy::trials(suite))
    .collect()
}
