/*
 * Building Ethernet/IPv4/TCP/UDP/ICMP frames for the COLO proxy unit tests
 *
 * Copyright (c) 2026 The qemu-colo authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef COLO_TEST_FRAMES_H
#define COLO_TEST_FRAMES_H

#include "qemu/bswap.h"

#define TF_CLIENT_IP    0x0a000001u     /* 10.0.0.1 */
#define TF_GUEST_IP     0x0a000002u     /* 10.0.0.2 */

typedef struct TfTcp {
    uint32_t src_ip, dst_ip;
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t window;
    size_t opt_len;             /* multiple of 4, filled with NOP + ts */
    uint32_t ts_val;            /* differs between guests in real life */
    uint32_t ts_ecr;
    uint16_t vlan;              /* 0: untagged */
    uint16_t ip_id;
} TfTcp;

static inline size_t tf_eth(uint8_t *buf, uint16_t vlan, uint16_t type)
{
    size_t off = 12;

    memset(buf, 0, 12);
    buf[0] = 0x52;
    buf[5] = 0x01;
    buf[6] = 0x52;
    buf[11] = 0x02;
    if (vlan) {
        stw_be_p(buf + off, 0x8100);
        stw_be_p(buf + off + 2, vlan);
        off += 4;
    }
    stw_be_p(buf + off, type);
    return off + 2;
}

static inline size_t tf_ipv4(uint8_t *ip, uint8_t proto, uint32_t src,
                             uint32_t dst, size_t l4_len, uint16_t id)
{
    memset(ip, 0, 20);
    ip[0] = 0x45;
    stw_be_p(ip + 2, 20 + l4_len);
    stw_be_p(ip + 4, id);
    ip[8] = 64;
    ip[9] = proto;
    stl_be_p(ip + 12, src);
    stl_be_p(ip + 16, dst);
    return 20;
}

/* Returns the frame length. @buf must hold 74 + opt_len + len bytes. */
static inline size_t tf_tcp(uint8_t *buf, const TfTcp *t, const void *data,
                            size_t len)
{
    size_t off = tf_eth(buf, t->vlan, 0x0800);
    size_t thl = 20 + t->opt_len;
    uint8_t *th;
    size_t i;

    off += tf_ipv4(buf + off, 6, t->src_ip ? t->src_ip : TF_GUEST_IP,
                   t->dst_ip ? t->dst_ip : TF_CLIENT_IP, thl + len, t->ip_id);
    th = buf + off;
    memset(th, 0, thl);
    stw_be_p(th, t->sport ? t->sport : 80);
    stw_be_p(th + 2, t->dport ? t->dport : 40000);
    stl_be_p(th + 4, t->seq);
    stl_be_p(th + 8, t->ack);
    th[12] = (thl / 4) << 4;
    th[13] = t->flags;
    stw_be_p(th + 14, t->window ? t->window : 512);
    for (i = 20; i < thl; i++) {
        th[i] = 1;
    }
    if (t->opt_len >= 12) {
        th[22] = 8;
        th[23] = 10;
        stl_be_p(th + 24, t->ts_val);
        stl_be_p(th + 28, t->ts_ecr);
    }
    if (len) {
        memcpy(th + thl, data, len);
    }
    return off + thl + len;
}

/* IPv6 TCP from fe80::2 (the guest) to fe80::1, or the reverse. */
static inline size_t tf_tcp6(uint8_t *buf, const TfTcp *t, bool to_guest,
                             const void *data, size_t len)
{
    size_t off = tf_eth(buf, t->vlan, 0x86dd);
    uint8_t *ip = buf + off, *th = ip + 40;

    memset(ip, 0, 40 + 20);
    ip[0] = 0x60;
    stw_be_p(ip + 4, 20 + len);
    ip[6] = 6;
    ip[7] = 64;
    ip[8] = ip[24] = 0xfe;
    ip[9] = ip[25] = 0x80;
    ip[23] = to_guest ? 1 : 2;
    ip[39] = to_guest ? 2 : 1;
    stw_be_p(th, t->sport ? t->sport : 80);
    stw_be_p(th + 2, t->dport ? t->dport : 40000);
    stl_be_p(th + 4, t->seq);
    stl_be_p(th + 8, t->ack);
    th[12] = 5 << 4;
    th[13] = t->flags;
    stw_be_p(th + 14, t->window ? t->window : 512);
    if (len) {
        memcpy(th + 20, data, len);
    }
    return off + 40 + 20 + len;
}

static inline size_t tf_udp(uint8_t *buf, uint16_t sport, uint16_t dport,
                            const void *data, size_t len, uint16_t ip_id)
{
    size_t off = tf_eth(buf, 0, 0x0800);
    uint8_t *uh;

    off += tf_ipv4(buf + off, 17, TF_GUEST_IP, TF_CLIENT_IP, 8 + len, ip_id);
    uh = buf + off;
    stw_be_p(uh, sport);
    stw_be_p(uh + 2, dport);
    stw_be_p(uh + 4, 8 + len);
    stw_be_p(uh + 6, 0);
    memcpy(uh + 8, data, len);
    return off + 8 + len;
}

static inline size_t tf_icmp(uint8_t *buf, uint8_t type, uint16_t id,
                             uint16_t seq, const void *data, size_t len)
{
    size_t off = tf_eth(buf, 0, 0x0800);
    uint8_t *ih;

    off += tf_ipv4(buf + off, 1, TF_GUEST_IP, TF_CLIENT_IP, 8 + len, 7);
    ih = buf + off;
    memset(ih, 0, 8);
    ih[0] = type;
    stw_be_p(ih + 4, id);
    stw_be_p(ih + 6, seq);
    if (len) {
        memcpy(ih + 8, data, len);
    }
    return off + 8 + len;
}

/*
 * ICMPv6 from the guest's link-local fe80::2 (or from :: when @dad) to
 * @dst_last (ff02::1:ffXX:XXXX style destinations keep only the last byte),
 * message @type with @len bytes of body after the 4-byte type/code/checksum.
 */
static inline size_t tf_icmp6(uint8_t *buf, uint8_t type, bool dad,
                              uint8_t dst_last, const void *body, size_t len)
{
    size_t off = tf_eth(buf, 0, 0x86dd);
    uint8_t *ip = buf + off, *ih = ip + 40;

    memset(ip, 0, 40 + 4);
    ip[0] = 0x60;
    stw_be_p(ip + 4, 4 + len);
    ip[6] = 58;
    ip[7] = 255;
    if (!dad) {
        ip[8] = 0xfe;
        ip[9] = 0x80;
        ip[23] = 2;
    }
    ip[24] = 0xff;
    ip[25] = 0x02;
    ip[39] = dst_last;
    ih[0] = type;
    if (len) {
        memcpy(ih + 4, body, len);
    }
    return off + 40 + 4 + len;
}

/*
 * Insert an IPv6 extension header of @type and @len bytes (a multiple of 8)
 * in front of the upper-layer header of the untagged IPv6 frame of
 * @frame_len bytes at @buf; returns the new frame length.
 */
static inline size_t tf_ext6(uint8_t *buf, size_t frame_len, uint8_t type,
                             size_t len)
{
    uint8_t *ip = buf + 14;

    memmove(ip + 40 + len, ip + 40, frame_len - 14 - 40);
    memset(ip + 40, 0, len);
    ip[40] = ip[6];                         /* its next header */
    ip[41] = type == 44 ? 0 : len / 8 - 1;  /* a fragment header: 8 bytes */
    ip[6] = type;
    stw_be_p(ip + 4, lduw_be_p(ip + 4) + len);
    return frame_len + len;
}

/* A frame of EtherType @type: 28 bytes of zeros but the last. */
static inline size_t tf_non_ip(uint8_t *buf, uint16_t type, uint8_t last_byte)
{
    size_t off = tf_eth(buf, 0, type);

    memset(buf + off, 0, 28);
    buf[off + 27] = last_byte;
    return off + 28;
}

/* An ARP request (Ethernet, IPv4) whose target address ends in @last_byte */
static inline size_t tf_arp(uint8_t *buf, uint8_t last_byte)
{
    size_t off = tf_non_ip(buf, 0x0806, last_byte);

    buf[off - 27] = 1;          /* hardware type 1 */
    buf[off - 26] = 8;          /* protocol 0x0800 */
    return off;
}

#endif /* COLO_TEST_FRAMES_H */
