{{/*
ambient-cni.settings: what every template renders, computed from the values once per template.
Layers, last wins (Istio's order): the defaults (values.yaml, under _internal_defaults_do_not_set),
the profile, the compatibilityVersion, the platform (files/), the user's values, the user's values
under `cni:`. Unknown keys, values of the wrong type and values this chart cannot honour fail
here, naming the key (README.md has the table). Output: YAML of
  v:        the merged values
  platform, image, pullPolicy, mode, logLevel, failurePolicy, cniBinDir
  data:     the ConfigMap's keys
  unused:   keys the user set that are accepted without effect (NOTES.txt lists them)
*/}}
{{- define "ambient-cni.settings" -}}
{{- $defaults := deepCopy (index .Values "_internal_defaults_do_not_set" | default dict) -}}
{{- $user := deepCopy (omit .Values "_internal_defaults_do_not_set") -}}
{{- $userCni := dict -}}
{{- if hasKey $user "cni" -}}
  {{- if not (kindIs "map" $user.cni) -}}
    {{- fail "ambient-cni: cni must be a map of this chart's keys (Istio's chart copies cni.* over the top level, and so does this one)" -}}
  {{- end -}}
  {{- $userCni = $user.cni -}}
  {{- $user = omit $user "cni" -}}
{{- end -}}
{{- if hasKey $user "defaults" -}}
  {{- fail "ambient-cni: unknown key defaults: set the keys themselves, e.g. --set hub=foo instead of --set defaults.hub=foo" -}}
{{- end -}}
{{- /* The key tree this chart knows: its defaults plus the one Istio key without a default. */ -}}
{{- $known := deepCopy $defaults -}}
{{- $_ := set $known.ambient "enableAmbientDetectionRetry" false -}}
{{- include "ambient-cni.checkKeys" (dict "shown" "" "rel" "" "val" $user "known" $known) -}}
{{- include "ambient-cni.checkKeys" (dict "shown" "cni." "rel" "" "val" $userCni "known" $known) -}}

{{- /* Presets, named by the user's values (Istio reads profile and platform under global too). */ -}}
{{- $asked := mustMergeOverwrite (deepCopy $user) (deepCopy $userCni) -}}
{{- $presets := list -}}
{{- with coalesce $asked.profile (dig "global" "profile" "" $asked) -}}
  {{- $text := $.Files.Get (printf "files/profile-%s.yaml" .) -}}
  {{- if not $text -}}
    {{- fail (printf "ambient-cni: unknown profile %q (Istio's cni chart has ambient, demo, preview, remote, stable)" .) -}}
  {{- end -}}
  {{- $presets = append $presets (dict "name" (printf "profile %s" .) "v" ($text | fromYaml)) -}}
{{- end -}}
{{- with $asked.compatibilityVersion -}}
  {{- /* YAML reads 1.30 as the number 1.3. */ -}}
  {{- $version := ternary (printf "%.2f" .) (toString .) (kindIs "float64" .) -}}
  {{- $text := $.Files.Get (printf "files/compatibility-version-%s.yaml" $version) -}}
  {{- if not $text -}}
    {{- fail (printf "ambient-cni: unknown compatibilityVersion %v (1.25 to 1.30)" .) -}}
  {{- end -}}
  {{- $presets = append $presets (dict "name" (printf "compatibilityVersion %s" $version) "v" ($text | fromYaml)) -}}
{{- end -}}
{{- with coalesce $asked.platform (dig "global" "platform" "" $asked) -}}
  {{- $text := $.Files.Get (printf "files/platform-%s.yaml" .) -}}
  {{- if not $text -}}
    {{- fail (printf "ambient-cni: unknown platform %q (gke, k3d, k3s, microk8s, minikube, openshift)" .) -}}
  {{- end -}}
  {{- $presets = append $presets (dict "name" (printf "platform %s" .) "v" ($text | fromYaml)) -}}
{{- end -}}
{{- $v := deepCopy $defaults -}}
{{- range $presets -}}
  {{- $v = mustMergeOverwrite $v (deepCopy .v) -}}
{{- end -}}
{{- $v = mustMergeOverwrite $v (deepCopy $user) (deepCopy $userCni) -}}
{{- /* Where a value came from, for the messages: the user's values, or the preset that set it. */ -}}
{{- $ctx := dict "asked" $asked "presets" $presets -}}

{{- /* ---- Keys this chart cannot honour (README.md: why, and what to do instead). ---- */ -}}
{{- if $v.repair.enabled -}}
  {{- fail (printf "ambient-cni: repair.enabled=true%s: ambient-cni has no sidecar repair controller (it serves ambient pods only; sidecar pods are never touched). Set repair.enabled=false." (include "ambient-cni.origin" (merge (dict "keys" (list "repair" "enabled")) $ctx))) -}}
{{- end -}}
{{- if ne (toString $v.provider) "default" -}}
  {{- fail (printf "ambient-cni: provider=%v%s: ambient-cni runs chained into (or as an owned copy of) the node's CNI configuration, never as a Multus network attachment. Remove provider (or set it to default)." $v.provider (include "ambient-cni.origin" (merge (dict "keys" (list "provider")) $ctx))) -}}
{{- end -}}
{{- if $v.cniConfFileName -}}
  {{- fail (printf "ambient-cni: cniConfFileName=%v%s: ambient-cni puts its entry into the configuration the runtime uses (the first .conf/.conflist in cniConfDir by name); it cannot be pointed at another file. Remove cniConfFileName." $v.cniConfFileName (include "ambient-cni.origin" (merge (dict "keys" (list "cniConfFileName")) $ctx))) -}}
{{- end -}}
{{- if not $v.ambient.reconcileIptablesOnStartup -}}
  {{- fail (printf "ambient-cni: ambient.reconcileIptablesOnStartup=false%s: ambient-cni's agent always re-checks and repairs every enrolled pod's rules when it starts (and every 30 s). Remove the key (or compatibilityVersion < 1.29)." (include "ambient-cni.origin" (merge (dict "keys" (list "ambient" "reconcileIptablesOnStartup")) $ctx))) -}}
{{- end -}}
{{- if not $v.ambient.shareHostNetworkNamespace -}}
  {{- fail (printf "ambient-cni: ambient.shareHostNetworkNamespace=false%s: ambient-cni's node component always runs in the host's network namespace (hostNetwork: it programs the host's probe SNAT and serves /readyz and metrics on the node). Remove the key or set it to true." (include "ambient-cni.origin" (merge (dict "keys" (list "ambient" "shareHostNetworkNamespace")) $ctx))) -}}
{{- end -}}
{{- if $v.global.logAsJson -}}
  {{- fail "ambient-cni: global.logAsJson=true: ambient-cni's node component logs text lines only. Remove the key." -}}
{{- end -}}
{{- $variant := toString ((coalesce $v.variant $v.global.variant) | default "") -}}
{{- if not (has $variant (list "" "distroless")) -}}
  {{- fail (printf "ambient-cni: %s=%s%s: ambient-cni publishes one image, without shell or package manager (distroless); there is no %s variant. Remove the key (\"distroless\" is accepted)." (ternary "variant" "global.variant" (not (empty $v.variant))) $variant (include "ambient-cni.origin" (merge (dict "keys" (ternary (list "variant") (list "global" "variant") (not (empty $v.variant)))) $ctx)) $variant) -}}
{{- end -}}
{{- if eq (toString $v.image) "install-cni" -}}
  {{- fail "ambient-cni: image=install-cni is Istio's CNI image; ambient-cni's is ambient-cni-node (remove the key, or name our image)." -}}
{{- end -}}
{{- if not (has (toString $v.global.resourceScope) (list "all" "cluster" "namespace")) -}}
  {{- fail (printf "ambient-cni: global.resourceScope=%v: one of all, cluster, namespace." $v.global.resourceScope) -}}
{{- end -}}

{{- /* ---- Values checked beyond their type. ---- */ -}}
{{- range $key := list "cniBinDir" "cniConfDir" "cniNetnsDir" -}}
  {{- $p := toString (index $v $key) -}}
  {{- if and $p (not (hasPrefix "/" $p)) -}}
    {{- fail (printf "ambient-cni: %s=%s: must be an absolute path" $key $p) -}}
  {{- end -}}
{{- end -}}
{{- if not $v.cniConfDir -}}{{- fail "ambient-cni: cniConfDir must not be empty" -}}{{- end -}}
{{- if not $v.cniNetnsDir -}}{{- fail "ambient-cni: cniNetnsDir must not be empty" -}}{{- end -}}
{{- $binDir := toString $v.cniBinDir -}}
{{- if not $binDir -}}
  {{- /* Istio's detection, for its gke preset that leaves the directory empty. */ -}}
  {{- $binDir = ternary "/home/kubernetes/bin" "/opt/cni/bin" (contains "-gke" .Capabilities.KubeVersion.GitVersion) -}}
{{- end -}}
{{- range $i, $ns := ($v.excludeNamespaces | default list) -}}
  {{- if or (not (kindIs "string" $ns)) (contains "," (toString $ns)) (empty $ns) -}}
    {{- fail (printf "ambient-cni: excludeNamespaces[%d]=%v: must be a namespace name" $i $ns) -}}
  {{- end -}}
{{- end -}}
{{- if not (kindIs "slice" $v.ambient.enablementSelectors) -}}
  {{- fail "ambient-cni: ambient.enablementSelectors must be a list of {podSelector, namespaceSelector}" -}}
{{- end -}}
{{- range $i, $sel := $v.ambient.enablementSelectors -}}
  {{- if not (kindIs "map" $sel) -}}
    {{- fail (printf "ambient-cni: ambient.enablementSelectors[%d] must be a map with podSelector and/or namespaceSelector" $i) -}}
  {{- end -}}
  {{- range $k, $_ := $sel -}}
    {{- if not (has $k (list "podSelector" "namespaceSelector")) -}}
      {{- fail (printf "ambient-cni: unknown key ambient.enablementSelectors[%d].%s (podSelector, namespaceSelector)" $i $k) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- range $k, $_ := ($v.podLabels | default dict) -}}
  {{- if has $k (list "app.kubernetes.io/name" "istio.io/dataplane-mode") -}}
    {{- fail (printf "ambient-cni: podLabels.%s: set by the chart (the DaemonSet's selector; the node component is never enrolled)" $k) -}}
  {{- end -}}
{{- end -}}
{{- $failurePolicy := toString $v.failurePolicy -}}
{{- if not (has $failurePolicy (list "closed" "open")) -}}
  {{- fail (printf "ambient-cni: failurePolicy=%s: closed or open" $failurePolicy) -}}
{{- end -}}
{{- $retry := dig "ambient" "enableAmbientDetectionRetry" "" $asked -}}
{{- if kindIs "bool" $retry -}}
  {{- $fromRetry := ternary "closed" "open" $retry -}}
  {{- if and (hasKey $asked "failurePolicy") (ne $fromRetry $failurePolicy) -}}
    {{- fail (printf "ambient-cni: ambient.enableAmbientDetectionRetry=%v means failurePolicy=%s, but failurePolicy=%s: set one of them" $retry $fromRetry $failurePolicy) -}}
  {{- end -}}
  {{- $failurePolicy = $fromRetry -}}
{{- end -}}
{{- range $key := list "apiTimeoutMs" "agentTimeoutMs" -}}
  {{- $n := index $v $key -}}
  {{- if or (not (regexMatch "^[0-9]+$" (toString $n))) (lt (int64 $n) 1) (gt (int64 $n) 600000) -}}
    {{- fail (printf "ambient-cni: %s=%v: an integer from 1 to 600000" $key $n) -}}
  {{- end -}}
{{- end -}}
{{- if or (not (regexMatch "^[0-9]+$" (toString $v.pluginTokenSeconds))) (lt (int64 $v.pluginTokenSeconds) 600) -}}
  {{- fail (printf "ambient-cni: pluginTokenSeconds=%v: an integer of at least 600" $v.pluginTokenSeconds) -}}
{{- end -}}
{{- if not (regexMatch "^[0-9]+$" (toString $v.terminationGracePeriodSeconds)) -}}
  {{- fail (printf "ambient-cni: terminationGracePeriodSeconds=%v: a number of seconds" $v.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- if not (has (toString $v.pluginLogLevel) (list "trace" "debug" "info" "warn" "error" "none")) -}}
  {{- fail (printf "ambient-cni: pluginLogLevel=%v: trace, debug, info, warn, error or none" $v.pluginLogLevel) -}}
{{- end -}}
{{- $logKey := ternary "logging.level" "global.logging.level" (not (empty $v.logging.level)) -}}
{{- $logLevel := include "ambient-cni.logLevel" (dict "key" $logKey "level" (toString (coalesce $v.logging.level $v.global.logging.level "info"))) -}}

{{- /* ---- What is rendered. ---- */ -}}
{{- $image := toString $v.image -}}
{{- if not (contains "/" $image) -}}
  {{- $hub := toString ((coalesce $v.hub $v.global.hub) | default "") -}}
  {{- $tag := toString (coalesce $v.tag $v.global.tag .Chart.AppVersion) -}}
  {{- $image = printf "%s%s:%s" (ternary (printf "%s/" $hub) "" (not (empty $hub))) $image $tag -}}
{{- end -}}
{{- $pullPolicy := toString (coalesce $v.pullPolicy $v.global.imagePullPolicy "IfNotPresent") -}}
{{- $owned := or (not $v.chained) $v.istioOwnedCNIConfig -}}
{{- $data := dict
    "AMBIENT_CNI_MODE" (ternary "owned" "chained" $owned)
    "AMBIENT_EXCLUDE_NAMESPACES" (join "," ($v.excludeNamespaces | default list))
    "AMBIENT_ENABLED" (toString $v.ambient.enabled)
    "AMBIENT_DNS_CAPTURE" (toString $v.ambient.dnsCapture)
    "AMBIENT_IPV6" (toString $v.ambient.ipv6)
    "AMBIENT_FAILURE_POLICY" $failurePolicy
    "AMBIENT_API_TIMEOUT_MS" (toString (int64 $v.apiTimeoutMs))
    "AMBIENT_AGENT_TIMEOUT_MS" (toString (int64 $v.agentTimeoutMs))
    "AMBIENT_PLUGIN_LOG_LEVEL" (toString $v.pluginLogLevel)
    "AMBIENT_LOG_LEVEL" $logLevel
    "AMBIENT_SYSTEM_NAMESPACE" (toString $v.systemNamespace)
    "AMBIENT_DAEMONSET_NAME" "ambient-cni-node"
    "AMBIENT_PLUGIN_SERVICE_ACCOUNT" (toString $v.pluginServiceAccount)
    "AMBIENT_PLUGIN_TOKEN_SECONDS" (toString (int64 $v.pluginTokenSeconds)) -}}
{{- /* Written only when they differ from the binary's defaults, as in the kustomize base. */ -}}
{{- if ne (toJson $v.ambient.enablementSelectors) (toJson $defaults.ambient.enablementSelectors) -}}
  {{- $_ := set $data "AMBIENT_ENABLEMENT_SELECTORS" (toJson $v.ambient.enablementSelectors) -}}
{{- end -}}
{{- if and $owned $v.istioOwnedCNIConfigFileName -}}
  {{- $_ := set $data "AMBIENT_OWNED_CONFLIST_NAME" (toString $v.istioOwnedCNIConfigFileName) -}}
{{- end -}}
{{- if not $v.statusChecksAgent -}}
  {{- $_ := set $data "AMBIENT_STATUS_CHECKS_AGENT" "false" -}}
{{- end -}}
{{- $unused := list -}}
{{- range $keys := list (list "useAppArmorAnnotation") (list "global" "nativeNftables") (list "ambient" "configDir") (list "repair" "hub") (list "repair" "tag") (list "repair" "labelPods") (list "repair" "deletePods") (list "repair" "repairPods") (list "repair" "initContainerName") (list "repair" "brokenPodLabelKey") (list "repair" "brokenPodLabelValue") -}}
  {{- if ne (toString (include "ambient-cni.dig" (dict "keys" $keys "in" $asked))) "<absent>" -}}
    {{- $unused = append $unused (join "." $keys) -}}
  {{- end -}}
{{- end -}}
{{- if and (not $owned) $v.istioOwnedCNIConfigFileName -}}
  {{- $unused = append $unused "istioOwnedCNIConfigFileName (chained mode)" -}}
{{- end -}}
{{- $platform := toString ((coalesce $asked.platform (dig "global" "platform" "" $asked)) | default "") -}}
{{- toYaml (dict "v" $v "platform" $platform "image" $image "pullPolicy" $pullPolicy "mode" (ternary "owned" "chained" $owned) "logLevel" $logLevel "failurePolicy" $failurePolicy "cniBinDir" $binDir "data" $data "unused" $unused) -}}
{{- end -}}

{{/*
ambient-cni.checkKeys: every key of .val must be one of .known's (.shown prefixes the name in
messages, .rel is the path from the values' root); maps this chart reads key by key are walked,
free-form ones (labels, env, resources, …) are not; scalars must have the default's type.
*/}}
{{- define "ambient-cni.checkKeys" -}}
{{- $free := list "affinity" "daemonSetLabels" "env" "nodeSelector" "podAnnotations" "podLabels" "resources" "seccompProfile" "seLinuxOptions" "updateStrategy" "global.defaultResources" -}}
{{- $lists := list "excludeNamespaces" "tolerations" "ambient.enablementSelectors" "global.imagePullSecrets" -}}
{{- range $k, $val := .val -}}
  {{- $rel := printf "%s%s" $.rel $k -}}
  {{- $name := printf "%s%s" $.shown $rel -}}
  {{- if not (hasKey $.known $k) -}}
    {{- fail (printf "ambient-cni: unknown key %s: neither a key of Istio's cni chart nor of this chart (README.md lists both)" $name) -}}
  {{- end -}}
  {{- $want := index $.known $k -}}
  {{- if has $rel $free -}}
    {{- if not (or (kindIs "map" $val) (kindIs "invalid" $val)) -}}
      {{- fail (printf "ambient-cni: %s must be a map" $name) -}}
    {{- end -}}
  {{- else if has $rel $lists -}}
    {{- if not (or (kindIs "slice" $val) (kindIs "invalid" $val)) -}}
      {{- fail (printf "ambient-cni: %s must be a list" $name) -}}
    {{- end -}}
  {{- else if kindIs "map" $want -}}
    {{- if not (kindIs "map" $val) -}}
      {{- fail (printf "ambient-cni: %s must be a map" $name) -}}
    {{- end -}}
    {{- include "ambient-cni.checkKeys" (dict "shown" $.shown "rel" (printf "%s." $rel) "val" $val "known" $want) -}}
  {{- else if kindIs "bool" $want -}}
    {{- if not (kindIs "bool" $val) -}}
      {{- fail (printf "ambient-cni: %s=%v must be true or false" $name $val) -}}
    {{- end -}}
  {{- else if kindIs "string" $want -}}
    {{- if not (or (kindIs "string" $val) (kindIs "float64" $val) (kindIs "int64" $val) (kindIs "int" $val)) -}}
      {{- fail (printf "ambient-cni: %s must be a string" $name) -}}
    {{- end -}}
  {{- else if or (kindIs "float64" $want) (kindIs "int64" $want) (kindIs "int" $want) -}}
    {{- if not (or (kindIs "float64" $val) (kindIs "int64" $val) (kindIs "int" $val)) -}}
      {{- fail (printf "ambient-cni: %s=%v must be a number" $name $val) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end -}}

{{/* ambient-cni.dig: the value at .keys in .in as text, or "<absent>". */}}
{{- define "ambient-cni.dig" -}}
{{- $at := .in -}}
{{- $found := true -}}
{{- range .keys -}}
  {{- if and $found (kindIs "map" $at) (hasKey $at .) -}}
    {{- $at = index $at . -}}
  {{- else -}}
    {{- $found = false -}}
  {{- end -}}
{{- end -}}
{{- ternary (toString $at) "<absent>" $found -}}
{{- end -}}

{{/* ambient-cni.origin: "" when the user's values set .keys, else " (set by <preset>)". */}}
{{- define "ambient-cni.origin" -}}
{{- $keys := .keys -}}
{{- if eq (include "ambient-cni.dig" (dict "keys" $keys "in" .asked)) "<absent>" -}}
  {{- $by := "" -}}
  {{- range .presets -}}
    {{- if ne (include "ambient-cni.dig" (dict "keys" $keys "in" .v)) "<absent>" -}}
      {{- $by = .name -}}
    {{- end -}}
  {{- end -}}
  {{- if $by }} (set by {{ $by }}){{- end -}}
{{- end -}}
{{- end -}}

{{/*
ambient-cni.logLevel: Istio's level (or `scope:level,…` list naming one level) as ours.
*/}}
{{- define "ambient-cni.logLevel" -}}
{{- $levels := list -}}
{{- range (splitList "," .level) -}}
  {{- $l := trim (last (splitList ":" .)) -}}
  {{- if eq $l "warning" -}}{{- $l = "warn" -}}{{- end -}}
  {{- if not (has $l $levels) -}}{{- $levels = append $levels $l -}}{{- end -}}
{{- end -}}
{{- if or (ne (len $levels) 1) (not (has (first $levels) (list "trace" "debug" "info" "warn" "error"))) -}}
  {{- fail (printf "ambient-cni: %s=%s: ambient-cni's node component has one log level: trace, debug, info, warn or error (Istio's scope:level form is accepted when every scope has the same level)" .key .level) -}}
{{- end -}}
{{- first $levels -}}
{{- end -}}

{{/* Labels of every object: the kustomize base's, Helm's, and Istio's revision/owner when set. */}}
{{- define "ambient-cni.labels" -}}
app.kubernetes.io/part-of: ambient-cni
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 }}
{{- with .v.revision }}
istio.io/rev: {{ . | quote }}
{{- end }}
{{- with .v.ownerName }}
install.operator.istio.io/owning-resource: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* ambient-cni.scope: "true" when objects of .scope (cluster or namespace) are rendered. */}}
{{- define "ambient-cni.scope" -}}
{{- if or (eq .v.global.resourceScope "all") (eq .v.global.resourceScope .scope) -}}true{{- end -}}
{{- end -}}
