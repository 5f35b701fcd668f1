/* net.c: address parsing and the socket calls roo makes, each with one error convention. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int roo__addr_parse(const char *s, roo__addr *ret_addr)
{
    roo__addr a;
    const char *colon, *host = s;
    size_t hlen;
    uint64_t port;

    if (!s || !*s)
        return -EINVAL;
    memset(&a, 0, sizeof(a));
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - s);
        /* An unbracketed IPv6 literal is ambiguous: insist on brackets. */
        if (memchr(s, ':', hlen))
            return -EINVAL;
    }
    if (hlen >= sizeof(a.host))
        return -EINVAL;
    memcpy(a.host, host, hlen);
    a.host[hlen] = '\0';
    if (roo__parse_uint(colon + 1, 0, 65535, &port) < 0)
        return -EINVAL;
    snprintf(a.port, sizeof(a.port), "%u", (unsigned)port);
    *ret_addr = a;
    return 0;
}

int roo__addr_list_parse(const char *s, roo__addr **ret_addrs, size_t *ret_n)
{
    roo__addr *v = NULL;
    size_t n = 0;
    char *copy = roo__xstrdup(s), *rest = copy, *tok;
    int rc = 0;

    /* strsep, not strtok: an empty member ("a:1,,b:2", a trailing comma) is a typo that
     * must not silently shorten the list. */
    while ((tok = strsep(&rest, ",")) != NULL) {
        /* "a:1, b:2" (a config file's habit) is fine; the blanks are not part of a host. */
        while (*tok == ' ' || *tok == '\t')
            tok++;
        for (char *e = tok + strlen(tok); e > tok && (e[-1] == ' ' || e[-1] == '\t');)
            *--e = '\0';
        v = roo__xrealloc(v, (n + 1) * sizeof(*v));
        rc = roo__addr_parse(tok, &v[n]);
        if (rc < 0)
            goto err_free;
        n++;
    }
    free(copy);
    *ret_addrs = v;
    *ret_n = n;
    return 0;

err_free:
    free(v);
    free(copy);
    return rc;
}

const char *roo__addr_str(const roo__addr *a, char *buf, size_t cap)
{
    if (strchr(a->host, ':'))
        snprintf(buf, cap, "[%s]:%s", a->host, a->port);
    else
        snprintf(buf, cap, "%s:%s", a->host, a->port);
    return buf;
}

const char *roo__sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
    return buf;
}

/* The third field (the maximum) of a /proc/sys/net/ipv4/tcp_*mem line, 0 if unreadable. */
static size_t tcp_mem_max(const char *path)
{
    unsigned long long lo, def, max;
    FILE *f = fopen(path, "r");
    int n;

    if (!f)
        return 0;
    n = fscanf(f, "%llu %llu %llu", &lo, &def, &max);
    fclose(f);
    return n == 3 && max <= SIZE_MAX / 4 ? (size_t)max : 0;
}

size_t roo__tcp_buffers_max(void)
{
    return tcp_mem_max("/proc/sys/net/ipv4/tcp_rmem") + tcp_mem_max("/proc/sys/net/ipv4/tcp_wmem");
}

int roo__set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static int resolve(const roo__addr *a, bool passive, struct addrinfo **ret_ai)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    const char *host = a->host[0] ? a->host : NULL;
    int rc;

    if (passive)
        hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(host, a->port, &hints, ret_ai);
    if (rc == 0)
        return 0;
    if (rc == EAI_SYSTEM)
        return errno ? -errno : -EIO;
    /* A name that does not resolve is not a host that cannot be reached: say which. */
    return rc == EAI_AGAIN ? ROO_ENAMEAGAIN : ROO_ENONAME;
}

int roo__tcp_bind(const roo__addr *a, int *ret_fd)
{
    return roo__tcp_bind_shared(a, false, ret_fd);
}

int roo__tcp_bind_shared(const roo__addr *a, bool shared, int *ret_fd)
{
    struct addrinfo *ai, *p;
    int rc, fd = -1, one = 1;

    rc = resolve(a, true, &ai);
    if (rc < 0)
        return rc;
    rc = -EADDRNOTAVAIL;
    for (p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (shared)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, p->ai_addr, p->ai_addrlen) == 0)
            break;
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return rc;
    *ret_fd = fd;
    return 0;
}

int roo__tcp_listen_fd(int fd, int backlog)
{
    return listen(fd, backlog) < 0 ? -errno : 0;
}

int roo__tcp_listen(const roo__addr *a, int backlog, int *ret_fd)
{
    int fd, rc = roo__tcp_bind(a, &fd);

    if (rc < 0)
        return rc;
    rc = roo__tcp_listen_fd(fd, backlog);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *ret_fd = fd;
    return 0;
}

int roo__tcp_local_str(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    roo__sockaddr_str((struct sockaddr *)&ss, buf, cap);
    return 0;
}

int roo__tcp_connect_start(const roo__addr *a, int *ret_fd)
{
    struct addrinfo *ai, *p;
    int rc, fd = -1;

    rc = resolve(a, false, &ai);
    if (rc < 0)
        return rc;
    rc = -ECONNREFUSED;
    for (p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, p->ai_addr, p->ai_addrlen) == 0 || errno == EINPROGRESS)
            break;
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return rc;
    *ret_fd = fd;
    return 0;
}

int roo__tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

int roo__tcp_accept(int lfd, int *ret_fd, char *peer, size_t peer_cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (peer)
        roo__sockaddr_str((struct sockaddr *)&ss, peer, peer_cap);
    *ret_fd = fd;
    return 0;
}

bool roo__tcp_is_loopback(int fd, bool local)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = local ? getsockname(fd, (struct sockaddr *)&ss, &len)
                   : getpeername(fd, (struct sockaddr *)&ss, &len);

    if (rc < 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}
