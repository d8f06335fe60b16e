/*
 * COLO proxy: strict parsing of the frames a guest emits
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Threads: none of its own; no shared state, every function is reentrant.
 */

#include "qemu/osdep.h"
#include "net/colo-packet.h"

static uint16_t rd16(const uint8_t *p)
{
    return ((uint16_t)p[0] << 8) | p[1];
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static ColoParseError parse_tcp(const uint8_t *l4, size_t l4_len,
                                size_t l4_offset, ColoPacketInfo *info)
{
    size_t doff;

    if (l4_len < 20) {
        return COLO_PARSE_SHORT_TCP;
    }
    doff = (size_t)(l4[12] >> 4) * 4;
    if (doff < 20 || doff > l4_len) {
        return COLO_PARSE_BAD_TCP_OFF;
    }
    info->kind = COLO_PKT_TCP;
    info->src_port = rd16(l4);
    info->dst_port = rd16(l4 + 2);
    info->tcp_seq = rd32(l4 + 4);
    info->tcp_ack = rd32(l4 + 8);
    info->tcp_flags = l4[13] & 0x3f;
    info->tcp_hdr_len = doff;
    info->payload_offset = l4_offset + doff;
    info->payload_len = l4_len - doff;
    return COLO_PARSE_OK;
}

static ColoParseError parse_udp(const uint8_t *l4, size_t l4_len,
                                size_t l4_offset, ColoPacketInfo *info)
{
    size_t udp_len;

    if (l4_len < 8) {
        return COLO_PARSE_SHORT_UDP;
    }
    udp_len = rd16(l4 + 4);
    if (udp_len < 8 || udp_len > l4_len) {
        return COLO_PARSE_BAD_UDP_LEN;
    }
    info->kind = COLO_PKT_UDP;
    info->src_port = rd16(l4);
    info->dst_port = rd16(l4 + 2);
    info->payload_offset = l4_offset + 8;
    info->payload_len = udp_len - 8;
    return COLO_PARSE_OK;
}

/* TCP, UDP or ICMP in @l4_len bytes at @l4_offset; sets kind. */
static ColoParseError parse_l4(const uint8_t *data, size_t l4_offset,
                               size_t l4_len, uint8_t icmp_proto,
                               ColoPacketInfo *info)
{
    info->kind = COLO_PKT_IP_OTHER;
    info->payload_offset = l4_offset;
    info->payload_len = l4_len;
    if (info->ip_proto == 6) {
        return parse_tcp(data + l4_offset, l4_len, l4_offset, info);
    }
    if (info->ip_proto == 17) {
        return parse_udp(data + l4_offset, l4_len, l4_offset, info);
    }
    if (info->ip_proto == icmp_proto) {
        if (l4_len < 8) {
            return COLO_PARSE_SHORT_ICMP;
        }
        info->kind = COLO_PKT_ICMP;
        info->icmp_type = data[l4_offset];
    }
    return COLO_PARSE_OK;
}

static ColoParseError parse_ipv6(const uint8_t *data, size_t len,
                                 ColoPacketInfo *info)
{
    const uint8_t *ip = data + info->l3_offset;
    size_t avail = len - info->l3_offset;
    size_t payload, hdr_len;
    uint8_t proto;

    if (avail < 40) {
        return COLO_PARSE_SHORT_IP;
    }
    if ((ip[0] >> 4) != 6) {
        return COLO_PARSE_BAD_IP_VERSION;
    }
    payload = rd16(ip + 4);
    if (40 + payload > avail) {
        return COLO_PARSE_BAD_IP_LEN;
    }
    info->ipv6 = true;
    info->ip_total_len = 40 + payload;
    memcpy(info->src_addr, ip + 8, 16);
    memcpy(info->dst_addr, ip + 24, 16);

    /*
     * Walk hop-by-hop, routing and destination options headers to the
     * upper-layer header (RFC 8200 4.1): every MLD report carries a
     * hop-by-hop Router Alert.  A fragment header ends the walk, like any
     * header not listed: what follows it is compared as other IP.
     */
    hdr_len = 40;
    proto = ip[6];
    while (proto == 0 || proto == 43 || proto == 60) {
        size_t ext_len;

        if (hdr_len + 8 > info->ip_total_len) {
            return COLO_PARSE_BAD_IP_EXT;
        }
        ext_len = ((size_t)ip[hdr_len + 1] + 1) * 8;
        if (hdr_len + ext_len > info->ip_total_len) {
            return COLO_PARSE_BAD_IP_EXT;
        }
        proto = ip[hdr_len];
        hdr_len += ext_len;
    }
    info->ip_proto = proto;
    info->ip_hdr_len = hdr_len;
    info->ip_fragment = proto == 44;
    return parse_l4(data, info->l3_offset + hdr_len,
                    info->ip_total_len - hdr_len, 58, info);
}

static ColoParseError parse_ipv4(const uint8_t *data, size_t len,
                                 ColoPacketInfo *info)
{
    const uint8_t *ip = data + info->l3_offset;
    size_t avail = len - info->l3_offset;
    size_t ihl, total, l4_offset;
    uint16_t frag;

    if (avail < 20) {
        return COLO_PARSE_SHORT_IP;
    }
    if ((ip[0] >> 4) != 4) {
        return COLO_PARSE_BAD_IP_VERSION;
    }
    ihl = (size_t)(ip[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > avail) {
        return COLO_PARSE_BAD_IHL;
    }
    total = rd16(ip + 2);
    if (total < ihl || total > avail) {
        return COLO_PARSE_BAD_IP_LEN;
    }
    frag = rd16(ip + 6);
    info->ip_hdr_len = ihl;
    info->ip_total_len = total;
    info->ip_proto = ip[9];
    info->ip_src = rd32(ip + 12);
    info->ip_dst = rd32(ip + 16);
    info->src_addr[10] = info->src_addr[11] = 0xff;
    memcpy(info->src_addr + 12, ip + 12, 4);
    info->dst_addr[10] = info->dst_addr[11] = 0xff;
    memcpy(info->dst_addr + 12, ip + 16, 4);
    /* More-fragments set or a non-zero offset: no L4 header to trust. */
    info->ip_fragment = (frag & 0x3fff) != 0;

    l4_offset = info->l3_offset + ihl;
    if (info->ip_fragment) {
        info->kind = COLO_PKT_IP_OTHER;
        info->payload_offset = l4_offset;
        info->payload_len = total - ihl;
        return COLO_PARSE_OK;
    }
    return parse_l4(data, l4_offset, total - ihl, 1, info);
}

ColoParseError colo_packet_parse(const uint8_t *data, size_t len,
                                 ColoPacketInfo *info)
{
    size_t off = COLO_ETH_HLEN;
    uint16_t type;

    memset(info, 0, sizeof(*info));
    if (len < COLO_ETH_HLEN) {
        return COLO_PARSE_SHORT_ETH;
    }
    type = rd16(data + 12);
    while (type == COLO_ETHERTYPE_VLAN || type == COLO_ETHERTYPE_QINQ) {
        if (info->vlan_tags == COLO_VLAN_MAX_TAGS) {
            return COLO_PARSE_TOO_MANY_TAGS;
        }
        if (len - off < COLO_VLAN_HLEN) {
            return COLO_PARSE_SHORT_VLAN;
        }
        info->vlan_key = (info->vlan_key << 12) | (rd16(data + off) & 0xfff);
        info->vlan_tags++;
        type = rd16(data + off + 2);
        off += COLO_VLAN_HLEN;
    }
    info->ethertype = type;
    info->l3_offset = off;
    if (type == COLO_ETHERTYPE_IPV4) {
        return parse_ipv4(data, len, info);
    }
    if (type == COLO_ETHERTYPE_IPV6) {
        return parse_ipv6(data, len, info);
    }
    info->kind = COLO_PKT_NON_IP;
    info->payload_offset = 0;
    info->payload_len = len;
    return COLO_PARSE_OK;
}

const char *colo_parse_error_name(ColoParseError err)
{
    static const char *const names[COLO_PARSE__MAX] = {
        [COLO_PARSE_OK] = "ok",
        [COLO_PARSE_SHORT_ETH] = "truncated-ethernet",
        [COLO_PARSE_SHORT_VLAN] = "truncated-vlan",
        [COLO_PARSE_TOO_MANY_TAGS] = "too-many-vlan-tags",
        [COLO_PARSE_SHORT_IP] = "truncated-ip",
        [COLO_PARSE_BAD_IP_VERSION] = "bad-ip-version",
        [COLO_PARSE_BAD_IHL] = "bad-ip-header-length",
        [COLO_PARSE_BAD_IP_LEN] = "bad-ip-total-length",
        [COLO_PARSE_SHORT_TCP] = "truncated-tcp",
        [COLO_PARSE_BAD_TCP_OFF] = "bad-tcp-data-offset",
        [COLO_PARSE_SHORT_UDP] = "truncated-udp",
        [COLO_PARSE_BAD_UDP_LEN] = "bad-udp-length",
        [COLO_PARSE_SHORT_ICMP] = "truncated-icmp",
        [COLO_PARSE_BAD_IP_EXT] = "bad-ipv6-extension-header",
    };

    return (unsigned)err < COLO_PARSE__MAX ? names[err] : "unknown";
}

const char *colo_packet_kind_name(ColoPacketKind kind)
{
    static const char *const names[COLO_PKT__MAX] = {
        [COLO_PKT_NON_IP] = "non-ip",
        [COLO_PKT_TCP] = "tcp",
        [COLO_PKT_UDP] = "udp",
        [COLO_PKT_ICMP] = "icmp",
        [COLO_PKT_IP_OTHER] = "other-ip",
    };

    return (unsigned)kind < COLO_PKT__MAX ? names[kind] : "unknown";
}

uint32_t colo_key_hash(const void *key, size_t len)
{
    const uint8_t *b = key;
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ b[i]) * 16777619u;
    }
    return h;
}
