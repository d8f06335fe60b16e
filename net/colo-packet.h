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
 * tags.  IPv4 is decoded down to TCP, UDP and ICMP; everything else
 * (ARP, IPv6, ...) is classified as non-IP and not looked into.
 * Ethernet padding after the IPv4 total length is allowed and ignored.
 */

#ifndef NET_COLO_PACKET_H
#define NET_COLO_PACKET_H

#define COLO_ETH_HLEN           14
#define COLO_VLAN_HLEN          4
#define COLO_VLAN_MAX_TAGS      2
#define COLO_ETHERTYPE_IPV4     0x0800
#define COLO_ETHERTYPE_VLAN     0x8100
#define COLO_ETHERTYPE_QINQ     0x88a8

#define COLO_TCP_FIN            0x01
#define COLO_TCP_SYN            0x02
#define COLO_TCP_RST            0x04
#define COLO_TCP_PSH            0x08
#define COLO_TCP_ACK            0x10

typedef enum ColoPacketKind {
    COLO_PKT_NON_IP,        /* not IPv4: compared as a whole frame */
    COLO_PKT_TCP,
    COLO_PKT_UDP,
    COLO_PKT_ICMP,
    COLO_PKT_IP_OTHER,      /* other IPv4 protocols and IPv4 fragments */
    COLO_PKT__MAX,
} ColoPacketKind;

typedef enum ColoParseError {
    COLO_PARSE_OK,
    COLO_PARSE_SHORT_ETH,       /* shorter than an Ethernet header */
    COLO_PARSE_SHORT_VLAN,      /* VLAN tag cut off */
    COLO_PARSE_TOO_MANY_TAGS,   /* more than COLO_VLAN_MAX_TAGS tags */
    COLO_PARSE_SHORT_IP,        /* shorter than a minimal IPv4 header */
    COLO_PARSE_BAD_IP_VERSION,  /* EtherType IPv4 but version != 4 */
    COLO_PARSE_BAD_IHL,         /* header length < 20 or beyond the frame */
    COLO_PARSE_BAD_IP_LEN,      /* total length < header or > frame */
    COLO_PARSE_SHORT_TCP,       /* TCP header cut off */
    COLO_PARSE_BAD_TCP_OFF,     /* TCP data offset < 5 or beyond IP data */
    COLO_PARSE_SHORT_UDP,       /* UDP header cut off */
    COLO_PARSE_BAD_UDP_LEN,     /* UDP length < 8 or beyond IP data */
    COLO_PARSE_SHORT_ICMP,      /* ICMP header cut off */
    COLO_PARSE__MAX,
} ColoParseError;

typedef struct ColoPacketInfo {
    ColoPacketKind kind;
    uint16_t ethertype;         /* innermost EtherType */
    uint8_t vlan_tags;          /* number of tags skipped */
    uint32_t vlan_key;          /* VLAN ids (12 bits each), outer first */
    size_t l3_offset;           /* start of the IPv4 header / EtherType data */

    /* IPv4 (kind != COLO_PKT_NON_IP), host byte order */
    uint32_t ip_src;
    uint32_t ip_dst;
    uint8_t ip_proto;
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

    /*
     * What is compared: TCP and UDP data, the whole ICMP message, the IPv4
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

#endif /* NET_COLO_PACKET_H */
