// Command testcp is a tiny test control plane: an embedded etcd on loopback
// plus kube-apiserver in one process. Flags of its own (consumed here):
//
//	--etcd-data-dir=DIR   etcd data directory (required)
//
// All other arguments go to kube-apiserver unchanged; --etcd-servers is
// appended, pointing at the embedded etcd.
package main

import (
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func freeURL() url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

func main() {
	dataDir, args := "", []string{}
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--etcd-data-dir="); ok {
			dataDir = v
		} else {
			args = append(args, a)
		}
	}
	if dataDir == "" {
		log.Fatal("testcp: --etcd-data-dir=DIR is required")
	}

	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	client, peer := freeURL(), freeURL()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("testcp: start etcd: %v", err)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		log.Fatal("testcp: etcd not ready after 60s")
	}
	fmt.Fprintf(os.Stderr, "testcp: etcd ready at %s\n", client.String())

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(append(args, "--etcd-servers="+client.String()))
	code := cli.Run(cmd)
	etcd.Close()
	os.Exit(code)
}
