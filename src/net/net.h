/* net.h: TCP addresses, listeners and non-blocking connects, IPv4 and IPv6. */
#ifndef ROO_NET_H
#define ROO_NET_H

#include <sys/socket.h>

#include "common/common.h"

/* "HOST:PORT" as given by the user; HOST may be a name, an IPv4 or a [bracketed] IPv6. */
typedef struct roo__addr {
    char host[256];
    char port[8];
} roo__addr;

/* Parse "HOST:PORT" / "[V6]:PORT" / ":PORT" (any host). -EINVAL if malformed. */
int roo__addr_parse(const char *s, roo__addr *ret_addr);

/* Parse a comma-separated list; *ret_addrs is malloc'ed (free it). */
int roo__addr_list_parse(const char *s, roo__addr **ret_addrs, size_t *ret_n);

/* Format back to "host:port" ("[v6]:port" for IPv6 literals). */
const char *roo__addr_str(const roo__addr *a, char *buf, size_t cap);

/* Format a sockaddr as "ip:port". */
const char *roo__sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

/* Listen on a (non-blocking, close-on-exec, SO_REUSEADDR); on failure *ret_fd untouched. */
int roo__tcp_listen(const roo__addr *a, int backlog, int *ret_fd);

/* Bind only (no listen yet: connections are refused until roo__tcp_listen_fd). */
int roo__tcp_bind(const roo__addr *a, int *ret_fd);
/*
 * The same, and with `shared` (SO_REUSEPORT) other sockets of this user that set it too may
 * bind the same address: the kernel spreads new connections over those that listen.
 */
int roo__tcp_bind_shared(const roo__addr *a, bool shared, int *ret_fd);
int roo__tcp_listen_fd(int fd, int backlog);

/* Whether a socket's own end (local) or its peer's is a loopback address (127/8, ::1). */
bool roo__tcp_is_loopback(int fd, bool local);

/* The address a listener actually got (port 0 resolved), as "ip:port". */
int roo__tcp_local_str(int fd, char *buf, size_t cap);

/*
 * Start a non-blocking connect. Returns 0 with *ret_fd set when the connect completed or
 * is in progress (wait for EPOLLOUT, then roo__tcp_connect_result()), or a negative errno
 * (a name that does not resolve gives ROO_ENONAME, or ROO_ENAMEAGAIN while the resolver
 * cannot answer).
 */
int roo__tcp_connect_start(const roo__addr *a, int *ret_fd);

/* After EPOLLOUT on a connecting socket: 0 if connected, else the negative errno. */
int roo__tcp_connect_result(int fd);

/* The most bytes one TCP connection on this host can hold in its buffers: the maxima of
 * the send and the receive buffer (net.ipv4.tcp_wmem + tcp_rmem); 0 if /proc says nothing.
 * A peer that dies may not have read that much of what was sent to it. */
size_t roo__tcp_buffers_max(void);

/* Accept one connection as non-blocking, close-on-exec; -EAGAIN when none is pending. */
int roo__tcp_accept(int lfd, int *ret_fd, char *peer, size_t peer_cap);

int roo__set_nonblock(int fd);

#endif /* ROO_NET_H */
