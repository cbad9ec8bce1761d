// CoreDNS for ci/node with only the plugins its Corefile (ci/node.d/Corefile) uses: the full build pulls in every
// cloud provider's SDK and takes several times longer to compile on 2 cores. Version pinned in go.mod
// (COREDNS_VERSION in ci/versions.env); built by ci/install-cluster-tools.sh.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
