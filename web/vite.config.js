// Two pages, built into the herald binary (crates/herald/build.rs): the chat app at / and the
// admin UI at /admin/. `npm run dev` serves them with hot reload; point it at a running
// herald with HERALD_URL (default http://127.0.0.1:8000).
import { defineConfig } from 'vite';
import { resolve } from 'node:path';

const target = process.env.HERALD_URL || 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/',
  build: {
    target: 'es2020',
    assetsDir: 'assets',
    reportCompressedSize: false,
    rollupOptions: {
      input: {
        chat: resolve(import.meta.dirname, 'index.html'),
        admin: resolve(import.meta.dirname, 'admin/index.html'),
      },
    },
  },
  server: {
    proxy: {
      '/connection': { target, ws: true },
      '/emulation': target,
      '/demo': target,
      '/admin/api': target,
    },
  },
});
