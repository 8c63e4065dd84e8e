// The Pod sandbox ("pause") program of the lab's node: a static binary that holds the Pod's
// namespaces until it is told to stop, and reaps the zombies it inherits.
module hostrouter.io/e2e/toolchain/pause

go 1.26.0
