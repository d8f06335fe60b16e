/*
 * COLO proxy: strict parsing of the frames a guest emits
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure C, no QEMU objects, no allocation: usable from any thread and from
 * the unit tests and fuzz target.  Every length read from the frame is
 * checked against the bytes available before it is used.
 *
 * Accepted frames: Ethernet II, optionally with up to two 802.1Q/802.1ad
 * tags.  IPv4 and IPv6 are decoded down to TCP, UDP and ICMP/ICMPv6 (IPv6
 * hop-by-hop, routing and destination options headers are walked; behind
 * a fragment or any other extension header a packet counts as other IP);
 * everything else (ARP, ...) is classified as non-IP and not looked into.
 * Ethernet padding after the IP total length is allowed and ignored.
 */

#ifndef NET_COLO_PACKET_H
#define NET_COLO_PACKET_H

#define COLO_ETH_HLEN           14
#define COLO_VLAN_HLEN          4
#define COLO_VLAN_MAX_TAGS      2
#define COLO_ETHERTYPE_IPV4     0x0800
#define COLO_ETHERTYPE_IPV6     0x86dd
#define COLO_ETHERTYPE_VLAN     0x8100
#define COLO_ETHERTYPE_QINQ     0x88a8

#define COLO_TCP_FIN            0x01
#define COLO_TCP_SYN            0x02
#define COLO_TCP_RST            0x04
#define COLO_TCP_PSH            0x08
#define COLO_TCP_ACK            0x10

typedef enum ColoPacketKind {
    COLO_PKT_NON_IP,        /* not IP: compared as a whole frame */
    COLO_PKT_TCP,
    COLO_PKT_UDP,
    COLO_PKT_ICMP,          /* ICMP and ICMPv6 */
    COLO_PKT_IP_OTHER,      /* other protocols, fragments, IPv6 ext. headers */
    COLO_PKT__MAX,
} ColoPacketKind;

typedef enum ColoParseError {
    COLO_PARSE_OK,
    COLO_PARSE_SHORT_ETH,       /* shorter than an Ethernet header */
    COLO_PARSE_SHORT_VLAN,      /* VLAN tag cut off */
    COLO_PARSE_TOO_MANY_TAGS,   /* more than COLO_VLAN_MAX_TAGS tags */
    COLO_PARSE_SHORT_IP,        /* shorter than a minimal IP header */
    COLO_PARSE_BAD_IP_VERSION,  /* IP version does not match the EtherType */
    COLO_PARSE_BAD_IHL,         /* header length < 20 or beyond the frame */
    COLO_PARSE_BAD_IP_LEN,      /* total/payload length beyond the frame */
    COLO_PARSE_SHORT_TCP,       /* TCP header cut off */
    COLO_PARSE_BAD_TCP_OFF,     /* TCP data offset < 5 or beyond IP data */
    COLO_PARSE_SHORT_UDP,       /* UDP header cut off */
    COLO_PARSE_BAD_UDP_LEN,     /* UDP length < 8 or beyond IP data */
    COLO_PARSE_SHORT_ICMP,      /* ICMP header cut off */
    COLO_PARSE_BAD_IP_EXT,      /* IPv6 extension header beyond the payload */
    COLO_PARSE__MAX,
} ColoParseError;

typedef struct ColoPacketInfo {
    ColoPacketKind kind;
    uint16_t ethertype;         /* innermost EtherType */
    uint8_t vlan_tags;          /* number of tags skipped */
    uint32_t vlan_key;          /* VLAN ids (12 bits each), outer first */
    size_t l3_offset;           /* start of the IPv4 header / EtherType data */

    /* IP (kind != COLO_PKT_NON_IP) */
    bool ipv6;
    uint32_t ip_src;            /* IPv4 only, host byte order */
    uint32_t ip_dst;
    uint8_t src_addr[16];       /* both families; IPv4 as ::ffff:a.b.c.d */
    uint8_t dst_addr[16];
    uint8_t ip_proto;           /* IPv6: the next header */
    bool ip_fragment;
    size_t ip_hdr_len;
    size_t ip_total_len;

    /* TCP and UDP, host byte order */
    uint16_t src_port;
    uint16_t dst_port;

    /* TCP, host byte order */
    uint32_t tcp_seq;
    uint32_t tcp_ack;
    uint8_t tcp_flags;
    size_t tcp_hdr_len;

    /* ICMP and ICMPv6 */
    uint8_t icmp_type;

    /*
     * What is compared: TCP and UDP data, the whole ICMP message, the IP
     * payload of other protocols and fragments, the whole frame for non-IP.
     */
    size_t payload_offset;
    size_t payload_len;
} ColoPacketInfo;

/* Parse @len bytes of Ethernet frame at @data into @info. */
ColoParseError colo_packet_parse(const uint8_t *data, size_t len,
                                 ColoPacketInfo *info);

/* A short, stable, lowercase name, for traces and statistics. */
const char *colo_parse_error_name(ColoParseError err);
const char *colo_packet_kind_name(ColoPacketKind kind);

/*
 * FNV-1a over the @len bytes of a connection key (a zero-initialised,
 * fixed-size struct), for the connection tables.
 */
uint32_t colo_key_hash(const void *key, size_t len);

#endif /* NET_COLO_PACKET_H */
