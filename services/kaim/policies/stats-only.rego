# A monitoring agent: may only read stats and events.
package kaim

default allow := false

allow if {
	input.RequestMethod in {"GET", "HEAD"}
	input.RequestPath in {"/_ping", "/events", "/containers/json"}
}

allow if {
	input.RequestMethod == "GET"
	regex.match(`^/containers/[A-Za-z0-9_.-]+/stats$`, input.RequestPath)
}

reason := "stats-only: read" if allow

deny contains "request body not allowed" if input.RequestBodySize > 0
