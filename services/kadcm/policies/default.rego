# kadcm's default passthrough policy (kaim's engine; input Kind "device").
# Input: Action ("attach"), Device (class, subsystem, devnode, major, minor, vendor_id,
# product_id, properties), Container (id, pid), Access ("rwm" subset), ContainerPath.
package kaim

default allow := false

# Virtualisation and user-space filesystems/networking may be handed to any container.
allow if {
	input.Kind == "device"
	input.Device.class in {"kvm", "fuse", "tun"}
}

# USB serial adapters (FTDI, vendor 0403) go only to the serial gateway.
allow if {
	input.Kind == "device"
	input.Device.subsystem == "tty"
	input.Device.vendor_id == "0403"
	input.Container.id == "serial-gw"
}

# GPUs' render nodes, read-write but never mknod, to containers labelled for it by id prefix.
allow if {
	input.Kind == "device"
	input.Device.class == "drm"
	startswith(object.get(input.Device.properties, "DEVNAME", ""), "dri/renderD")
	startswith(input.Container.id, "gpu-")
	not contains(input.Access, "m")
}

# Host disks and the memory devices never leave the host.
deny contains "block devices are not passed through" if input.Device.class == "block"

deny contains "memory devices are not passed through" if {
	input.Device.subsystem == "mem"
	not input.Device.minor in {3, 5, 7, 8, 9}
}

deny contains "only a device path below /dev" if {
	p := object.get(input, "ContainerPath", "/dev/")
	not startswith(p, "/dev/")
}

reason := sprintf("%s %s to %s", [input.Action, input.Device.class, input.Container.id]) if allow
