// Command etcd is upstream etcd (go.etcd.io/etcd/server/v3), built from the
// module proxy for the local test control plane. It is the same entry point
// as etcd's own main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
