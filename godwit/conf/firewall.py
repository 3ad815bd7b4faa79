"""[firewall] options: the nftables firewall driver (compute/firewall)."""

from oslo_config import cfg

GROUP = "firewall"

FIREWALL_OPTS = [
    cfg.StrOpt("table", default="godwit",
               help="nftables table (family inet) that holds the instances' ingress "
                    "chains; the 'nftables' firewall driver owns it."),
    cfg.ListOpt("default_ingress", default=[],
                help="Ingress allowed to every instance besides replies to its own "
                     "traffic, IPv6 neighbour discovery and DHCP replies: rules like "
                     "'icmp', 'icmpv6', 'tcp:22', 'udp:5000-5010', each optionally limited "
                     "to a source with '@<cidr>' ('tcp:22@198.51.100.0/24'). Everything "
                     "else to the instance is dropped."),
    cfg.StrOpt("netns", default="",
               help="Network namespace the 'nftables' firewall driver works in (runs "
                    "'ip netns exec <netns> nft'); empty is the agent's own."),
]


def register_opts(conf):
    conf.register_opts(FIREWALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: FIREWALL_OPTS}
