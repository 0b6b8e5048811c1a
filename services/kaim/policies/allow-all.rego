# Everything allowed (every decision still audited): for an administrator's own uid.
package kaim

default allow := true

reason := "allow-all"
