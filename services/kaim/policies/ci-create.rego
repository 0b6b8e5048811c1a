# A CI runner: may look around and run containers from its own registry namespace, but never
# privileged, never with host binds, devices, added capabilities or host namespaces.
# Body checks use RequestBodyFolded (keys lower-cased): the daemon matches JSON field names
# case-insensitively, so these rules cannot be dodged by spelling "hostconfig".
package kaim

default allow := false

body := input.RequestBodyFolded

# Total helpers: a field of the wrong JSON type reads as empty, never as a policy error.
obj(x) := x if is_object(x)
else := {}

list(x) := x if is_array(x)
else := []

str(x) := x if is_string(x)
else := ""

hostconfig := obj(object.get(obj(body), "hostconfig", {}))

read_paths := {"/_ping", "/version", "/info", "/containers/json", "/events"}

allow if {
	input.RequestMethod in {"GET", "HEAD"}
	input.RequestPath in read_paths
}

allow if {
	input.RequestMethod == "POST"
	input.RequestPath == "/containers/create"
}

allow if {
	input.RequestMethod == "GET"
	regex.match(`^/containers/[A-Za-z0-9_.-]+/(json|logs)$`, input.RequestPath)
}

allow if {
	input.RequestMethod == "POST"
	regex.match(`^/containers/[A-Za-z0-9_.-]+/(start|stop|wait|attach|kill)$`, input.RequestPath)
}

allow if {
	input.RequestMethod == "DELETE"
	regex.match(`^/containers/[A-Za-z0-9_.-]+$`, input.RequestPath)
}

reason := sprintf("ci: %s %s", [input.RequestMethod, input.RequestPath])

# Only create takes a body here; a body anywhere else is refused.
deny contains "request body not allowed on this endpoint" if {
	input.RequestBodySize > 0
	not input.RequestPath == "/containers/create"
	not regex.match(`^/containers/[A-Za-z0-9_.-]+/(start|stop|wait|attach|kill)$`, input.RequestPath)
}

deny contains "request body is not JSON" if input.RequestBodyOpaque

creating if input.RequestPath == "/containers/create"

deny contains "image must be under registry.local/ci/" if {
	creating
	not image_ok
}

image_ok if {
	img := str(object.get(obj(body), "image", ""))
	startswith(img, "registry.local/ci/")
	not contains(img, "..")
}

deny contains "privileged containers are not allowed" if {
	creating
	object.get(hostconfig, "privileged", false) != false
}

deny contains "host binds are not allowed" if {
	creating
	count(list(object.get(hostconfig, "binds", []))) > 0
}

deny contains "host binds are not allowed" if {
	creating
	some m in list(object.get(hostconfig, "mounts", []))
	lower(str(object.get(obj(m), "type", ""))) == "bind"
}

deny contains "added capabilities are not allowed" if {
	creating
	count(list(object.get(hostconfig, "capadd", []))) > 0
}

deny contains "host devices are not allowed" if {
	creating
	count(list(object.get(hostconfig, "devices", []))) > 0
}

deny contains sprintf("host %s namespace is not allowed", [k]) if {
	creating
	some k in {"networkmode", "pidmode", "ipcmode", "utsmode", "usernsmode", "cgroupnsmode"}
	lower(str(object.get(hostconfig, k, ""))) == "host"
}

deny contains "security options are not allowed" if {
	creating
	count(list(object.get(hostconfig, "securityopt", []))) > 0
}

deny contains "the container's body must be a JSON object" if {
	creating
	not is_object(body)
}
