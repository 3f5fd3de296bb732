"""Certwright discovery, pure: targets, TLS probing, the sweep engine, health, rules (schedules: app/recurrence.py).

Nothing here imports Flask, SQLAlchemy, app.models, app.services or app.extensions (a test
walks the AST). Services persist what these functions return; actors call ``run_shard``.
Import from the submodules; this package module imports nothing so workers start fast.

Targets (app.scan.targets, .addresses, .shards, .resolve)
    parse_target_spec(ranges, ports="443", *, host_overrides=None, max_addresses=65_536,
        deny=DEFAULT_DENY) -> TargetSpec                  raises TargetSpecError(messages)
    validate_targets(...) -> list[str]; parse_ports(text); parse_host_overrides(text)
    TargetSpec: blocks, host_names, ports, host_overrides; address_count, target_count;
        to_dict()/from_dict()
    parse_deny_list(lines) -> tuple[DenyEntry, ...]; DEFAULT_DENY
    split_into_shards(spec, shard_size=4096) -> Iterator[Shard]   (lazy; size in targets)
    count_shards(spec, shard_size) -> int
    pick_shard_size(target_count, largest=4096) -> int   (small tasks: four shards)
    Shard: index, blocks [(start, end, version)], host_names, ports, host_overrides;
        target_count, describe(), to_dict()/from_dict()
    iter_targets(shard, resolved=None) -> Iterator[Target(ip, port, host_name, version)]
    resolve_host_names(names, *, overrides, deny, timeout, lookup) -> {name: Resolution}

Probing (app.scan.probe, .sweep)
    probe(ip, port, host_name=None, *, connect_timeout, handshake_timeout, context)
        -> ProbeResult                                   (async, one endpoint)
    ProbeResult: ip, port, host_name, tls_version, cipher, chain (DER, leaf first), error
        (ErrorKind | None), detail, elapsed; to_dict()/from_dict()
    ErrorKind: refused timeout handshake_timeout not_tls handshake_failure unreachable reset
        unresolved denied
    make_client_context() -> ssl.SSLContext  (no verification, TLS 1.0-1.3, SECLEVEL=0)
    SweepOptions(connect_timeout, handshake_timeout, connect_concurrency, tls_concurrency,
        report_closed, batch_size, batch_interval, resolve_timeout)
    sweep_shard(shard, options, *, on_batch, should_stop, context, deny, lookup)
        -> SweepSummary                                  (async)
    sweep_targets(targets, options, *, on_batch, should_stop, context) -> SweepSummary
    run_shard(shard, options, *, on_batch, should_stop, deny) -> SweepSummary  (blocking;
        sweep on its own thread, callbacks on the caller's thread)
    SweepBatch(results, progress: SweepProgress(targets_total, targets_done, open_ports,
        tls_endpoints, elapsed)); SweepSummary(progress, counts, stopped)

Health (app.scan.health, .certinfo)
    assess_chain(chain, *, host_name, tls_version, now, anchors=()) -> frozenset[HealthFlag]
    assess_result(result, *, now, anchors=()) -> frozenset[HealthFlag]
    HealthFlag: self_signed_leaf incomplete_chain misordered_chain hostname_mismatch expired
        not_yet_valid weak_key sha1_signature legacy_tls unparseable_certificate
    match_dns_pattern(pattern, host_name); matches_host_name(cert, host_name)

Rules (app.scan.rules, .observation, .patterns)
    parse_rule(data) -> Rule  raises RuleError;  validate_rule(data) -> list[str]
    Rule(name, match: MatchMode, conditions: tuple[Condition], target: AssignmentTarget,
        rule_id); Condition(field: Field, operator: Operator, value)
    RuleSet(rules).first_match(observation) -> RuleMatch(rule, index) | None
    observe(leaf_der, *, ip, port, host_name) -> Observation;  observe_result(result)
    SafePattern(pattern) raises PatternError;  .search(text) -> bool  (RE2, ignoring case)

Command line: ``python -m app.scan "10.0.0.0/24" --ports 443,8443`` (see --help).
"""
