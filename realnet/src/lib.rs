//! Real Linux epoll (work in progress).
