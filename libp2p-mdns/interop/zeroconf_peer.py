"""A python-zeroconf peer shaped like py-libp2p 0.8.1's mDNS: it registers `_p2p._udp.local.`
with TXT keys dnsaddr, dnsaddr2 (and SRV, A), browses the same service and prints what it
resolves, one line per service:

    ZC-FOUND <instance name> <json of TXT properties> <json of addresses> <port>

Usage (inside a network namespace, never on a real network):
    python zeroconf_peer.py <peer id> <ipv4> <ipv6> <port> <seconds>
"""

import json
import secrets
import socket
import string
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

SERVICE = "_p2p._udp.local."


class Listener(ServiceListener):
    def __init__(self, own: str) -> None:
        self.own = own

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        if name == self.own:
            return
        info = zc.get_service_info(type_, name, timeout=3000)
        if info is None:
            print("ZC-UNRESOLVED", name, flush=True)
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        print(
            "ZC-FOUND",
            name,
            json.dumps(props, separators=(",", ":")),
            json.dumps(info.parsed_addresses(), separators=(",", ":")),
            info.port,
            flush=True,
        )

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        pass

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        print("ZC-REMOVED", name, flush=True)


def main() -> None:
    peer_id, ip4, ip6, port, seconds = sys.argv[1:6]
    label = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32))
    own = f"{label}.{SERVICE}"
    zc = Zeroconf(ip_version=IPVersion.All)
    info = ServiceInfo(
        SERVICE,
        own,
        port=int(port),
        properties={
            "dnsaddr": f"/ip4/{ip4}/tcp/{port}/p2p/{peer_id}",
            "dnsaddr2": f"/ip6/{ip6}/tcp/{port}/p2p/{peer_id}",
        },
        server=f"{label}.local.",
        addresses=[socket.inet_aton(ip4), socket.inet_pton(socket.AF_INET6, ip6)],
    )
    zc.register_service(info)
    ServiceBrowser(zc, SERVICE, Listener(own))
    time.sleep(float(seconds))
    zc.unregister_service(info)
    zc.close()


if __name__ == "__main__":
    main()
